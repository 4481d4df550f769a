package geoip

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/proxypool/proxypool/internal/upstream"
)

// shippedClasses is the table classes.txt documents: hosting and cloud
// ASes, mobile carriers, and organisation words.
//
//go:embed classes.txt
var shippedClasses []byte

// Classifier names an exit's class (datacenter, residential, mobile) from
// its autonomous system: a rule for the number, else the first rule
// whose word the organisation's name holds, else residential. An exit
// with no ASN is unknown. It is immutable once built.
type Classifier struct {
	byASN map[uint32]upstream.Class
	words []classWord
}

type classWord struct {
	word  string // lower case
	class upstream.Class
}

// NewClassifier reads the shipped table, after the override file at
// path (its rules win) when path is not "".
func NewClassifier(path string) (*Classifier, error) {
	c := &Classifier{byASN: map[uint32]upstream.Class{}}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("reading exit classes: %w", err)
		}
		defer f.Close()
		if err := c.read(f, path); err != nil {
			return nil, err
		}
	}
	if err := c.read(bytes.NewReader(shippedClasses), "classes.txt"); err != nil {
		return nil, err
	}
	return c, nil
}

// read adds the rules of r; a rule already held (by number) is kept.
func (c *Classifier) read(r io.Reader, name string) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		cls, rule, ok := strings.Cut(line, " ")
		if !ok {
			return fmt.Errorf("reading exit classes: %s:%d: want \"<class> AS<number>\" or \"<class> org:<word>\"", name, n)
		}
		class, err := upstream.ParseClass(cls)
		if err != nil {
			return fmt.Errorf("reading exit classes: %s:%d: %w", name, n, err)
		}
		rule = strings.TrimSpace(rule)
		if w, ok := strings.CutPrefix(rule, "org:"); ok {
			w = strings.ToLower(strings.TrimSpace(w))
			if w == "" {
				return fmt.Errorf("reading exit classes: %s:%d: empty org word", name, n)
			}
			c.words = append(c.words, classWord{w, class})
			continue
		}
		asn, err := upstream.ParseASN(rule)
		if err != nil {
			return fmt.Errorf("reading exit classes: %s:%d: %w", name, n, err)
		}
		if _, held := c.byASN[asn]; !held {
			c.byASN[asn] = class
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading exit classes: %s: %w", name, err)
	}
	return nil
}

// Class is the class of an exit in AS asn run by org; unknown for asn 0.
func (c *Classifier) Class(asn uint32, org string) upstream.Class {
	if asn == 0 {
		return upstream.ClassUnknown
	}
	if cl, ok := c.byASN[asn]; ok {
		return cl
	}
	lower := strings.ToLower(org)
	for _, w := range c.words {
		if strings.Contains(lower, w.word) {
			return w.class
		}
	}
	return upstream.ClassResidential
}
