package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metacubex/mihomo/adapter/inbound"
	C "github.com/metacubex/mihomo/constant"
	LC "github.com/metacubex/mihomo/listener/config"
	mss "github.com/metacubex/mihomo/listener/sing_shadowsocks"
	"github.com/metacubex/mihomo/listener/sing_vmess"
	mtrojan "github.com/metacubex/mihomo/listener/trojan"
	mlog "github.com/metacubex/mihomo/log"
)

// Credentials shared by every sealed member of a fleet.
const (
	ssCipher       = "aes-128-gcm"
	ssPassword     = "fleet-ss-password"
	vmessUUID      = "b831381d-6324-4d53-ad4f-8cda48b30811"
	trojanPassword = "fleet-trojan-password"
	trojanSNI      = "fleet.test"
)

// sealed holds one mihomo inbound listener per encrypted kind. Their own
// listening sockets (on 127.0.0.1:0) stay idle: members accept connections
// themselves, apply their behaviour, and hand good ones to HandleConn. The
// tunnel then dials targets from the member's exit address.
//
// listener/sing_shadowsocks is used rather than listener/shadowsocks, whose
// Close leaves its accept loop spinning (it never sets its closed flag).
type sealed struct {
	f      *Fleet
	ss     *mss.Listener
	vmess  *sing_vmess.Listener
	trojan *mtrojan.Listener
	tlsCfg *tls.Config
}

func newSealed(f *Fleet) (*sealed, error) {
	silenceMihomo()
	s := &sealed{f: f}
	t := tunnel{f: f}
	l, err := mss.New(LC.ShadowsocksServer{Enable: true, Listen: "127.0.0.1:0", Password: ssPassword, Cipher: ssCipher}, t)
	if err != nil {
		return nil, fmt.Errorf("starting ss inbound: %w", err)
	}
	s.ss = l.(*mss.Listener)
	s.vmess, err = sing_vmess.New(LC.VmessServer{Enable: true, Listen: "127.0.0.1:0",
		Users: []LC.VmessUser{{Username: "fleet", UUID: vmessUUID, AlterID: 0}}}, t)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("starting vmess inbound: %w", err)
	}
	certPEM, keyPEM, cert, err := selfSigned()
	if err != nil {
		s.close()
		return nil, err
	}
	s.tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.trojan, err = mtrojan.New(LC.TrojanServer{Enable: true, Listen: "127.0.0.1:0",
		Users: []LC.TrojanUser{{Username: "fleet", Password: trojanPassword}}, Certificate: certPEM, PrivateKey: keyPEM}, t)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("starting trojan inbound: %w", err)
	}
	return s, nil
}

func (s *sealed) close() {
	if s.ss != nil {
		s.ss.Close()
	}
	if s.vmess != nil {
		s.vmess.Close()
	}
	if s.trojan != nil {
		s.trojan.Close()
	}
}

// silenceMihomo sets mihomo's own log level once: its inbounds would
// otherwise log every connection through logrus's global logger.
var silenceMihomo = sync.OnceFunc(func() { mlog.SetLevel(mlog.SILENT) })

// memberTag carries the member index through mihomo's metadata.
const memberTag = "fleet-member-"

func (s *sealed) serve(m *Member, c net.Conn) {
	tag := inbound.Addition(func(md *C.Metadata) { md.InName = memberTag + strconv.Itoa(m.Index) })
	switch m.Spec.Kind {
	case SS:
		s.ss.HandleConn(c, tunnel{f: s.f}, tag)
	case VMess:
		s.vmess.HandleConn(c, tunnel{f: s.f}, tag)
	case Trojan:
		tc := tls.Server(c, s.tlsCfg)
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			return
		}
		s.trojan.HandleConn(tc, tunnel{f: s.f}, tag)
	}
}

// tunnel is the C.Tunnel the mihomo inbounds hand decoded connections to.
type tunnel struct{ f *Fleet }

func (t tunnel) HandleTCPConn(conn net.Conn, md *C.Metadata) {
	defer conn.Close()
	m := t.member(md)
	if m == nil {
		return
	}
	ctx, cancel := m.handshakeCtx()
	out, err := m.dialExit(ctx, md.RemoteAddress())
	cancel()
	if err != nil {
		return
	}
	m.relay(conn, conn, out)
}

func (t tunnel) member(md *C.Metadata) *Member {
	if s, ok := strings.CutPrefix(md.InName, memberTag); ok {
		if i, err := strconv.Atoi(s); err == nil && i >= 0 && i < len(t.f.members) {
			return t.f.members[i]
		}
	}
	return nil
}

func (t tunnel) HandleUDPPacket(p C.UDPPacket, _ *C.Metadata) { p.Drop() }
func (t tunnel) NatTable() C.NatTable                         { return nil }

// selfSigned makes a throwaway ECDSA certificate for trojan members.
func selfSigned() (certPEM, keyPEM string, cert tls.Certificate, err error) {
	return selfSignedFor(trojanSNI, nil)
}

// selfSignedFor makes a throwaway ECDSA certificate, signed by nobody, for
// name and ips.
func selfSignedFor(name string, ips []net.IP) (certPEM, keyPEM string, cert tls.Certificate, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", cert, fmt.Errorf("generating %s key: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * 365 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", cert, fmt.Errorf("making %s certificate: %w", name, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", cert, err
	}
	certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	cert, err = tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	return certPEM, keyPEM, cert, err
}
