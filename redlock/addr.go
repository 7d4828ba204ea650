package redlock

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// address is one parsed master address.
type address struct {
	raw      string // exactly as written in Config (may hold a password)
	redacted string // raw with the password replaced by "xxxxx": safe for errors and logs
	host     string
	port     int
	db       int
	tls      bool
	username string
	password string
	field    string // where Config lists it: "Servers[1]", "Cluster[0][2]"
}

// hostPort is "host:port" (IPv6 hosts bracketed).
func (a address) hostPort() string { return net.JoinHostPort(a.host, strconv.Itoa(a.port)) }

// identity is the normalized form that names a master: canonical host and
// port, without scheme, credentials or database. Two spellings of one master
// have one identity, so duplicates are caught and routing is order-free; two
// databases of one server are one master too (one process, one failure: it
// must not cast two votes). IP literals are canonical (canonicalHost);
// names are lower-cased. Spellings text cannot unify (DNS aliases) are
// caught at connect by the server's run_id (Client.claimServer).
func (a address) identity() string {
	return net.JoinHostPort(canonicalHost(a.host), strconv.Itoa(a.port))
}

// canonicalHost is the canonical text of an IP literal: IPv4-mapped IPv6
// (::ffff:127.0.0.1, 0:0:0:0:0:ffff:7f00:1) as plain IPv4, other IPv6 in its
// shortest RFC 5952 form. Anything else (a DNS name) is returned as is.
func canonicalHost(h string) string {
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return h
	}
	return ip.Unmap().String()
}

const maxAddressLen = 4096

// parseAddress accepts "host:port", "host" (port 6379),
// "redis://[user:pass@]host[:port][/db]" and "rediss://…" (TLS).
// Errors never contain the password.
func parseAddress(raw string) (address, error) {
	a := address{raw: raw, port: 6379}
	a.redacted = redactAddress(raw)
	if raw == "" {
		return a, errors.New("empty address")
	}
	if len(raw) > maxAddressLen {
		return a, fmt.Errorf("address longer than %d bytes", maxAddressLen)
	}
	for _, r := range raw {
		if r <= ' ' || r == 0x7f {
			return a, errors.New("address contains a space or control character")
		}
	}
	rest := raw
	if i := strings.Index(rest, "://"); i >= 0 {
		switch strings.ToLower(rest[:i]) {
		case "redis":
		case "rediss":
			a.tls = true
		default:
			if !validScheme(rest[:i]) { // whatever precedes "://" may be "user:password@…"
				return a, errors.New("unsupported or malformed scheme (want redis:// or rediss://)")
			}
			return a, fmt.Errorf("unsupported scheme %q (want redis:// or rediss://)", rest[:i])
		}
		rest = rest[i+3:]
		if j := strings.IndexAny(rest, "?#"); j >= 0 {
			return a, errors.New("query strings and fragments are not supported; use Config fields")
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			user, pass, hasPass := strings.Cut(rest[:at], ":")
			var err error
			if a.username, err = unescape(user); err != nil {
				return a, fmt.Errorf("bad username: %w", err)
			}
			if hasPass {
				if a.password, err = unescape(pass); err != nil {
					return a, errors.New("bad password escape (the password is not shown)")
				}
			}
			rest = rest[at+1:]
		}
		if slash := strings.IndexByte(rest, '/'); slash >= 0 {
			dbs := rest[slash+1:]
			rest = rest[:slash]
			if dbs != "" {
				db, err := strconv.Atoi(dbs)
				if err != nil || db < 0 || db > 1<<20 {
					return a, fmt.Errorf("bad database number %q", dbs)
				}
				a.db = db
			}
		}
	} else if strings.ContainsAny(rest, "/@?#") {
		return a, errors.New(`want "host:port" or a redis:// URL`)
	}
	if rest == "" {
		return a, errors.New("missing host")
	}
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") || strings.Count(rest, ":") == 1 {
		h, p, err := net.SplitHostPort(rest)
		if err != nil {
			if strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") {
				h, p = rest[1:len(rest)-1], ""
			} else {
				return a, fmt.Errorf("bad host:port: %v", trimAddrErr(err))
			}
		}
		if strings.HasSuffix(rest, ":") {
			return a, errors.New(`bad port "" (want 1-65535)`)
		}
		host, port = h, p
	} else if strings.Count(rest, ":") > 1 {
		return a, errors.New("IPv6 addresses must be bracketed: [::1]:6379")
	}
	if host == "" {
		return a, errors.New("missing host")
	}
	if strings.ContainsAny(host, "[]") || !validHost(host) {
		return a, fmt.Errorf("bad host %q (want an IP address or a DNS name)", truncate(host, 64))
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return a, fmt.Errorf("bad port %q (want 1-65535)", port)
		}
		a.port = p
	}
	a.host = strings.ToLower(host)
	return a, nil
}

// trimAddrErr strips the input echo from net's errors (it may be long).
func trimAddrErr(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated %-escape")
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", errors.New("bad %-escape")
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// redactAddress hides the password of an address: in a URL
// "scheme://user:PASSWORD@host" and in malformed spellings of one
// ("redis:/user:PASSWORD@host", "user:PASSWORD@host"), whatever lies between
// the first ':' of the user-info and the last '@' becomes "xxxxx".
func redactAddress(raw string) string {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 && i < at {
		start = i + 3
	}
	c := strings.IndexByte(raw[start:at], ':')
	if c < 0 {
		return raw
	}
	return raw[:start+c+1] + "xxxxx" + raw[at:]
}

// validScheme reports whether s is an RFC 3986 scheme of at most 32 bytes.
func validScheme(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case i > 0 && ('0' <= r && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return true
}

// validHost accepts the bytes of IP literals (IPv6 with a zone included) and
// DNS names: ASCII letters, digits and ".-_:%". Anything else cannot be
// dialed, and would make identities unstable (strings.ToLower rewrites
// invalid UTF-8 as U+FFFD, so distinct inputs could share one identity).
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == '_' || c == ':' || c == '%':
		default:
			return false
		}
	}
	return true
}
