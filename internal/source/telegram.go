package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/proxypool/proxypool/internal/upstream"
)

// telegramChannel returns the channel of a public channel preview URL
// (https://t.me/s/<channel>, also telegram.me), or "".
func telegramChannel(u *url.URL) string {
	if s := strings.ToLower(u.Scheme); s != "https" && s != "http" {
		return ""
	}
	switch strings.TrimPrefix(strings.ToLower(u.Hostname()), "www.") {
	case "t.me", "telegram.me":
	default:
		return ""
	}
	rest, ok := strings.CutPrefix(u.Path, "/s/")
	if !ok {
		return ""
	}
	ch, _, _ := strings.Cut(rest, "/")
	for _, c := range ch {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return ch
}

// fetchTelegram reads up to TelegramPages pages of a channel preview,
// newest first (each older page via ?before=<oldest message id>), and
// returns the message text lines joined by newlines. Its validator is a
// hash of that text: the pages change with every view counter, the links
// do not.
func (f *Fetcher) fetchTelegram(ctx context.Context, channel string, max int64, prev upstream.SourceMeta) (Fetched, error) {
	base := strings.TrimRight(f.TelegramBase, "/")
	if base == "" {
		base = DefaultTelegramBase
	}
	pages := f.TelegramPages
	if pages <= 0 {
		pages = DefaultTelegramPage
	}
	client := f.httpClient()
	var body bytes.Buffer
	seen := map[string]bool{}
	before := 0
	for page := 0; page < pages; page++ {
		pageURL := base + "/s/" + channel
		if before > 0 {
			pageURL += "?before=" + strconv.Itoa(before)
		}
		resp, err := f.get(ctx, client, pageURL, http.Header{"Accept": {"text/html"}})
		if err != nil {
			return Fetched{}, err
		}
		where := "GET " + redact(resp.Request.URL)
		if !strings.HasPrefix(resp.Request.URL.Path, "/s/") {
			resp.Body.Close()
			return Fetched{}, fmt.Errorf("telegram channel %q has no public web preview (redirected to %s)", channel, redact(resp.Request.URL))
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return Fetched{}, fmt.Errorf("%s: %s", where, resp.Status)
		}
		b, err := readBody(resp, max)
		resp.Body.Close()
		if err != nil {
			return Fetched{}, fmt.Errorf("%s: %w", where, err)
		}
		tp := ExtractTelegram(b)
		for _, l := range tp.Lines {
			if seen[l] {
				continue
			}
			seen[l] = true
			body.WriteString(l)
			body.WriteByte('\n')
			if int64(body.Len()) > max {
				return Fetched{}, fmt.Errorf("telegram channel %q: %w: more than %d bytes of text", channel, ErrTooLarge, max)
			}
		}
		if tp.Messages == 0 || tp.Oldest <= 1 || (before > 0 && tp.Oldest >= before) {
			break // no older page
		}
		before = tp.Oldest
	}
	sum := sha256.Sum256(body.Bytes())
	out := Fetched{ETag: ownTagPrefix + "text-" + hex.EncodeToString(sum[:16])}
	if prev.ETag == out.ETag {
		out.NotModified = true
		return out, nil
	}
	out.Body = body.Bytes()
	return out, nil
}

// TelegramPage is what ExtractTelegram found in one channel preview page.
type TelegramPage struct {
	Lines    []string // non-empty, trimmed text lines of every message, in page order
	Messages int      // messages on the page (data-post attributes)
	Oldest   int      // smallest message id seen, 0 if none
}

// ExtractTelegram takes the text of every message on a t.me/s/<channel>
// page: the inside of each element whose class has
// tgme_widget_message_text, split into lines at <br/> and block ends, tags
// dropped (so <code> spans and emoji markup give their text), HTML entities
// unescaped. Links whose target is not http(s) (a share link behind
// shortened anchor text) add their href as a line of its own. It never
// fails: anything unrecognized is text or nothing.
func ExtractTelegram(page []byte) TelegramPage {
	s := string(page)
	var tp TelegramPage
	// message ids
	for rest := s; ; {
		i := strings.Index(rest, `data-post="`)
		if i < 0 {
			break
		}
		rest = rest[i+len(`data-post="`):]
		j := strings.IndexByte(rest, '"')
		if j < 0 {
			break
		}
		post := rest[:j]
		rest = rest[j:]
		k := strings.LastIndexByte(post, '/')
		id, err := strconv.Atoi(post[k+1:])
		if err != nil || id <= 0 {
			continue
		}
		tp.Messages++
		if tp.Oldest == 0 || id < tp.Oldest {
			tp.Oldest = id
		}
	}
	// message texts
	const marker = "tgme_widget_message_text"
	for pos := 0; pos < len(s); {
		i := strings.Index(s[pos:], marker)
		if i < 0 {
			break
		}
		i += pos
		pos = i + len(marker)
		if pos < len(s) && s[pos] != '"' && s[pos] != ' ' && s[pos] != '\'' {
			continue // another class sharing the prefix
		}
		lt := strings.LastIndexByte(s[:i], '<')
		if lt < 0 || strings.IndexByte(s[lt:i], '>') >= 0 || !hasPrefixFold(s[lt:], "<div") {
			continue // the marker is not inside a <div …> tag
		}
		gt := strings.IndexByte(s[pos:], '>')
		if gt < 0 {
			break
		}
		start := pos + gt + 1
		end := divEnd(s, start)
		tp.Lines = append(tp.Lines, textLines(s[start:end])...)
		pos = end
	}
	return tp
}

// divEnd returns the index of the </div> closing a div whose content starts
// at start (nested divs counted), or len(s).
func divEnd(s string, start int) int {
	depth := 1
	for i := start; i < len(s); {
		j := strings.IndexByte(s[i:], '<')
		if j < 0 {
			return len(s)
		}
		i += j
		switch {
		case hasPrefixFold(s[i:], "</div"):
			depth--
			if depth == 0 {
				return i
			}
		case hasPrefixFold(s[i:], "<div"):
			depth++
		}
		i++
	}
	return len(s)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// textLines turns one message's inner HTML into trimmed, non-empty lines.
func textLines(frag string) []string {
	var b strings.Builder
	var href string
	anchorStart := -1
	for i := 0; i < len(frag); {
		lt := strings.IndexByte(frag[i:], '<')
		if lt < 0 {
			b.WriteString(html.UnescapeString(frag[i:]))
			break
		}
		b.WriteString(html.UnescapeString(frag[i : i+lt]))
		i += lt
		gt := strings.IndexByte(frag[i:], '>')
		if gt < 0 {
			b.WriteString(html.UnescapeString(frag[i:]))
			break
		}
		tag := frag[i+1 : i+gt]
		i += gt + 1
		closing := strings.HasPrefix(tag, "/")
		name := strings.ToLower(strings.TrimLeft(tag, "/"))
		if k := strings.IndexAny(name, " \t\n\r/"); k >= 0 {
			name = name[:k]
		}
		switch {
		case name == "br", name == "div", name == "p", name == "blockquote", name == "pre":
			b.WriteByte('\n')
		case name == "a" && !closing:
			href, anchorStart = attr(tag, "href"), b.Len()
		case name == "a" && closing:
			if anchorStart >= 0 && shareLink(href) {
				text := strings.TrimSpace(b.String()[anchorStart:])
				if text != href {
					b.WriteString("\n" + href + "\n")
				}
			}
			href, anchorStart = "", -1
		}
	}
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// attr returns the unescaped value of a quoted attribute in a tag's text.
func attr(tag, name string) string {
	lower := strings.ToLower(tag)
	for from := 0; ; {
		i := strings.Index(lower[from:], name+"=")
		if i < 0 {
			return ""
		}
		i += from
		from = i + len(name) + 1
		if i > 0 && lower[i-1] != ' ' && lower[i-1] != '\t' && lower[i-1] != '\n' {
			continue // e.g. data-href=
		}
		v := tag[from:]
		if v == "" {
			return ""
		}
		q := v[0]
		if q != '"' && q != '\'' {
			end := strings.IndexAny(v, " \t\n")
			if end < 0 {
				end = len(v)
			}
			return html.UnescapeString(v[:end])
		}
		end := strings.IndexByte(v[1:], q)
		if end < 0 {
			return ""
		}
		return html.UnescapeString(v[1 : 1+end])
	}
}

// shareLink reports whether an href is worth a line of its own: a URI whose
// scheme is not one of the web's own.
func shareLink(href string) bool {
	scheme, rest, ok := strings.Cut(href, "://")
	if !ok || rest == "" || scheme == "" {
		return false
	}
	switch strings.ToLower(scheme) {
	case "http", "https", "tg", "mailto", "javascript", "ftp":
		return false
	}
	return true
}
