package parse

import "encoding/base64"

func base64StdAppend(dst, src []byte) []byte { return base64.StdEncoding.AppendEncode(dst, src) }
