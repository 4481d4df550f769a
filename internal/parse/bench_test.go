package parse

import "testing"

func benchLine(b *testing.B, line string) {
	silenceMihomo()
	for i := 0; i < b.N; i++ {
		if _, err := ParseURI(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTrojan(b *testing.B) { benchLine(b, "trojan://pw@1.2.3.4:443#x") }
func BenchmarkSocks5(b *testing.B) { benchLine(b, "socks5://1.2.3.4:1080") }
func BenchmarkVless(b *testing.B) {
	benchLine(b, "vless://9794d18f-9280-3553-a7a5-a23da75aca76@example.com:443?security=tls&type=ws&path=/x#n")
}

// BenchmarkParseList: a 10 000-line host:port list.
func BenchmarkParseList(b *testing.B) {
	silenceMihomo()
	var in []byte
	for i := 0; i < 10000; i++ {
		in = append(in, []byte("10.0."+itoa(i/100%100)+"."+itoa(i%100)+":8080\n")...)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(in, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
