package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// MaxURLLength is the longest callback URL accepted, in bytes.
const MaxURLLength = 2048

// Guard decides which callback addresses bucketbridge may reach, so that a
// callback URL cannot make the service call itself, the cloud's instance
// metadata service or the operator's private network (server-side request
// forgery).
//
// It is configured by BB_CALLBACK_ALLOW, a comma-separated list of CIDRs and
// host names:
//
//   - Loopback, link-local, unspecified, multicast, broadcast and reserved
//     addresses, the cloud metadata addresses, and every IPv6 form that
//     embeds one of them, are refused unless a CIDR of the allowlist covers
//     the address and lies wholly inside the refused range: 127.0.0.1/32
//     admits 127.0.0.1, but 0.0.0.0/0 admits no loopback address, and
//     169.254.0.0/16 admits link-local addresses but not 169.254.169.254,
//     which only 169.254.169.254/32 admits. An IPv4-mapped address
//     (::ffff:a.b.c.d) is its IPv4 address; another IPv6 form that embeds
//     one of these (IPv4-compatible, NAT64, 6to4, Teredo, ISATAP) is
//     admitted only by a CIDR naming exactly that IPv6 address (/128).
//   - Private (RFC 1918, fc00::/7) and carrier-grade NAT (100.64.0.0/10)
//     addresses are refused unless a CIDR covers them or the URL's host name
//     is on the allowlist: ticket systems usually live on private networks,
//     and naming the host is how the operator says it may be called. A
//     listed name admits private addresses only, never the ones above. An
//     IPv6 form embedding a private IPv4 address is admitted by a CIDR
//     covering either of them, or by the listed name.
//   - Every other address is public and allowed.
//
// URLs must use https; http is allowed for hosts on the allowlist (a listed
// name, or an IP address a listed CIDR covers).
//
// A host name entry matches that name exactly; an entry "*.corp.example"
// matches every name below corp.example but not corp.example itself.
type Guard struct {
	cidrs []netip.Prefix
	hosts []string
}

// NewGuard parses allow, the value of BB_CALLBACK_ALLOW. An IP address
// without a prefix length stands for that single address.
func NewGuard(allow string) (*Guard, error) {
	g := &Guard{}
	for entry := range strings.SplitSeq(allow, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if strings.Contains(entry, "/") {
			p, err := netip.ParsePrefix(entry)
			if err != nil {
				return nil, fmt.Errorf("BB_CALLBACK_ALLOW entry %q is not a CIDR such as 10.20.0.0/16: %w", entry, err)
			}
			if p != p.Masked() {
				return nil, fmt.Errorf("BB_CALLBACK_ALLOW entry %q has bits set past its prefix length; did you mean %s?", entry, p.Masked())
			}
			g.cidrs = append(g.cidrs, unmapPrefix(p))
			continue
		}
		if ip, err := netip.ParseAddr(entry); err == nil {
			if ip.Zone() != "" {
				return nil, fmt.Errorf("BB_CALLBACK_ALLOW entry %q must not carry an IPv6 zone", entry)
			}
			ip = ip.Unmap()
			g.cidrs = append(g.cidrs, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		name := strings.TrimSuffix(strings.ToLower(entry), ".")
		if !validHostName(strings.TrimPrefix(name, "*.")) {
			return nil, fmt.Errorf("BB_CALLBACK_ALLOW entry %q is neither a CIDR, an IP address nor a host name", entry)
		}
		g.hosts = append(g.hosts, name)
	}
	return g, nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n ≥ 96) into a.b.c.d/(n-96), because
// addresses are compared after unmapping.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// String lists the allowlist as BB_CALLBACK_ALLOW would spell it.
func (g *Guard) String() string {
	parts := make([]string, 0, len(g.cidrs)+len(g.hosts))
	for _, p := range g.cidrs {
		parts = append(parts, p.String())
	}
	return strings.Join(append(parts, g.hosts...), ",")
}

// hostListed reports whether a host name is on the allowlist.
func (g *Guard) hostListed(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return false
	}
	for _, h := range g.hosts {
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return true
			}
		} else if h == host {
			return true
		}
	}
	return false
}

// covered reports whether some allowlist CIDR contains ip.
func (g *Guard) covered(ip netip.Addr) bool {
	for _, p := range g.cidrs {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// coveredWithin reports whether some allowlist CIDR contains ip and lies
// wholly inside r: how the operator names a normally refused range.
func (g *Guard) coveredWithin(ip netip.Addr, r netip.Prefix) bool {
	for _, p := range g.cidrs {
		if p.Contains(ip) && p.Bits() >= r.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// AddressError means a callback address is one bucketbridge does not
// connect to.
type AddressError struct {
	// Host is the URL's host name, or "" when the URL named an address.
	Host string
	// Addr is the refused address.
	Addr netip.Addr
	// Reason says what the address is and how to allow it, if it can be.
	Reason string
}

func (e *AddressError) Error() string {
	if e.Host == "" || e.Host == e.Addr.String() {
		return fmt.Sprintf("address %s is refused: %s", e.Addr, e.Reason)
	}
	return fmt.Sprintf("host %s resolves to %s, which is refused: %s", e.Host, e.Addr, e.Reason)
}

// addrRange is a range of addresses refused by default.
type addrRange struct {
	prefix netip.Prefix
	what   string
	// private ranges may also be admitted by listing the host name.
	private bool
}

// refusedRanges are checked in order; the first that contains an address
// decides, so more specific ranges come first.
// https://www.iana.org/assignments/iana-ipv4-special-registry/
// https://www.iana.org/assignments/iana-ipv6-special-registry/
var refusedRanges = []addrRange{
	// Instance metadata: AWS, GCP, Azure and others at 169.254.169.254 (and
	// AWS's IPv6 endpoint), Alibaba Cloud at 100.100.100.200.
	{prefix: netip.MustParsePrefix("169.254.169.254/32"), what: "the cloud instance metadata service"},
	{prefix: netip.MustParsePrefix("fd00:ec2::254/128"), what: "the cloud instance metadata service"},
	{prefix: netip.MustParsePrefix("100.100.100.200/32"), what: "the cloud instance metadata service"},
	{prefix: netip.MustParsePrefix("0.0.0.0/8"), what: "an unspecified (\"this host\") address"},
	{prefix: netip.MustParsePrefix("::/128"), what: "the unspecified address"},
	{prefix: netip.MustParsePrefix("127.0.0.0/8"), what: "a loopback address"},
	{prefix: netip.MustParsePrefix("::1/128"), what: "a loopback address"},
	{prefix: netip.MustParsePrefix("169.254.0.0/16"), what: "a link-local address"},
	{prefix: netip.MustParsePrefix("fe80::/10"), what: "a link-local address"},
	{prefix: netip.MustParsePrefix("224.0.0.0/4"), what: "a multicast address"},
	{prefix: netip.MustParsePrefix("ff00::/8"), what: "a multicast address"},
	{prefix: netip.MustParsePrefix("255.255.255.255/32"), what: "the broadcast address"},
	{prefix: netip.MustParsePrefix("240.0.0.0/4"), what: "a reserved address"},
	{prefix: netip.MustParsePrefix("10.0.0.0/8"), what: "a private (RFC 1918) address", private: true},
	{prefix: netip.MustParsePrefix("172.16.0.0/12"), what: "a private (RFC 1918) address", private: true},
	{prefix: netip.MustParsePrefix("192.168.0.0/16"), what: "a private (RFC 1918) address", private: true},
	{prefix: netip.MustParsePrefix("100.64.0.0/10"), what: "a carrier-grade NAT (RFC 6598) address", private: true},
	{prefix: netip.MustParsePrefix("fc00::/7"), what: "a unique local (private) IPv6 address", private: true},
	{prefix: netip.MustParsePrefix("fec0::/10"), what: "a site-local (private) IPv6 address", private: true},
	{prefix: netip.MustParsePrefix("64:ff9b:1::/48"), what: "a local-use NAT64 (RFC 8215) address", private: true},
}

func classify(ip netip.Addr) (addrRange, bool) {
	for _, r := range refusedRanges {
		if r.prefix.Contains(ip) {
			return r, true
		}
	}
	return addrRange{}, false
}

// embedded is an IPv4 address carried inside an IPv6 one, and how.
type embedded struct {
	addr netip.Addr
	how  string
}

// embeddedIPv4 returns the IPv4 addresses an IPv6 address carries and that
// a translator, tunnel or dual-stack socket may connect to instead.
// (IPv4-mapped addresses are unmapped before this is asked.)
func embeddedIPv4(ip netip.Addr) []embedded {
	if !ip.Is6() {
		return nil
	}
	b := ip.As16()
	v4 := func(p []byte) netip.Addr { return netip.AddrFrom4([4]byte(p)) }
	zero := func(p []byte) bool {
		for _, x := range p {
			if x != 0 {
				return false
			}
		}
		return true
	}
	var out []embedded
	switch {
	case zero(b[:12]):
		// ::a.b.c.d, "IPv4-compatible" (RFC 4291, deprecated).
		out = append(out, embedded{v4(b[12:]), "IPv4-compatible"})
	case zero(b[:8]) && b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0:
		// ::ffff:0:a.b.c.d, "IPv4-translated" (RFC 2765).
		out = append(out, embedded{v4(b[12:]), "IPv4-translated"})
	case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && zero(b[4:12]):
		// 64:ff9b::/96, the well-known NAT64 prefix (RFC 6052).
		out = append(out, embedded{v4(b[12:]), "NAT64"})
	case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0 && b[5] == 1:
		// 64:ff9b:1::/48, local-use NAT64 (RFC 8215), in RFC 6052's /48
		// layout: two octets, the reserved "u" octet, two octets.
		out = append(out, embedded{v4([]byte{b[6], b[7], b[9], b[10]}), "NAT64"})
	case b[0] == 0x20 && b[1] == 0x02:
		// 2002:aabb:ccdd::/48, 6to4 (RFC 3056).
		out = append(out, embedded{v4(b[2:6]), "6to4"})
	case b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0:
		// 2001::/32, Teredo (RFC 4380): the server's address, and the
		// client's with every bit flipped.
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		out = append(out, embedded{v4(b[4:8]), "Teredo"}, embedded{netip.AddrFrom4(client), "Teredo"})
	}
	// ISATAP (RFC 5214) interface identifiers, under any prefix.
	if b[8]&^0x03 == 0 && b[9] == 0 && b[10] == 0x5e && b[11] == 0xfe {
		out = append(out, embedded{v4(b[12:]), "ISATAP"})
	}
	return out
}

// CheckAddr reports whether bucketbridge may connect to ip for a URL whose
// host is host ("" when the URL names the address itself). It returns nil
// or an *AddressError.
func (g *Guard) CheckAddr(host string, ip netip.Addr) error {
	ip = ip.WithZone("").Unmap()
	refuse := func(reason string) error { return &AddressError{Host: host, Addr: ip, Reason: reason} }
	if r, ok := classify(ip); ok {
		switch {
		case g.coveredWithin(ip, r.prefix):
		case r.private && (g.covered(ip) || g.hostListed(host)):
		case r.private:
			return refuse(fmt.Sprintf("it is %s; %s", r.what, howToAllowPrivate(host)))
		case r.prefix.IsSingleIP():
			return refuse(fmt.Sprintf("it is %s; only a CIDR in BB_CALLBACK_ALLOW naming exactly %s allows it", r.what, ip))
		default:
			return refuse(fmt.Sprintf("it is %s; only a CIDR in BB_CALLBACK_ALLOW within %s allows it", r.what, r.prefix))
		}
	}
	for _, e := range embeddedIPv4(ip) {
		r, ok := classify(e.addr)
		if !ok {
			continue
		}
		switch {
		case g.coveredWithin(ip, netip.PrefixFrom(ip, 128)):
		case r.private && (g.covered(ip) || g.covered(e.addr) || g.hostListed(host)):
		case r.private:
			return refuse(fmt.Sprintf("it carries %s (%s), %s; %s", e.addr, e.how, r.what, howToAllowPrivate(host)))
		default:
			return refuse(fmt.Sprintf("it carries %s (%s), %s; only a CIDR in BB_CALLBACK_ALLOW naming exactly %s allows it", e.addr, e.how, r.what, ip))
		}
	}
	return nil
}

func howToAllowPrivate(host string) string {
	if host == "" {
		return "a CIDR in BB_CALLBACK_ALLOW that covers it allows it"
	}
	return "listing the host name, or a CIDR that covers the address, in BB_CALLBACK_ALLOW allows it"
}

// URLError says what is wrong with a callback URL.
type URLError struct {
	// Reason is the message for the caller, such as "must use https".
	Reason string
	// Err is the underlying error, such as an *AddressError, if any.
	Err error
}

func (e *URLError) Error() string { return "callback URL " + e.Reason }

// Unwrap returns the underlying error.
func (e *URLError) Unwrap() error { return e.Err }

func badURL(format string, args ...any) error {
	return &URLError{Reason: fmt.Sprintf(format, args...)}
}

// CheckURL refuses, when a request is created, every callback URL that can
// be refused before connecting: what is not an absolute http(s) URL, what
// carries credentials, control characters or an impossible port, http to a
// host not on the allowlist, names of this machine or of cloud-internal
// services, hosts that resolvers read as IPv4 addresses in unusual forms
// (octal, hexadecimal, a single number, non-ASCII digits), and IP addresses
// that CheckAddr refuses. It returns nil or a *URLError. Connection time
// still checks every resolved address: a name may resolve anywhere.
func (g *Guard) CheckURL(raw string) error {
	if len(raw) > MaxURLLength {
		return badURL("must be at most %d characters long", MaxURLLength)
	}
	if !utf8.ValidString(raw) {
		return badURL("must be valid UTF-8")
	}
	for i, r := range raw {
		if unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) {
			return badURL("must not contain spaces, control or formatting characters (found %U at byte %d); percent-encode them", r, i)
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &URLError{Reason: "is not a valid URL: " + err.Error(), Err: err}
	}
	if !u.IsAbs() || u.Opaque != "" || u.Host == "" {
		return badURL("must be an absolute URL such as https://tickets.example.com/hooks/bucketbridge")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return badURL("must use https, not %s", u.Scheme)
	}
	if u.User != nil {
		return badURL("must not contain a user name or password; the signature in the webhook-signature header authenticates each call")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return badURL("port must be between 1 and 65535, not %s", port)
		}
	}
	host := u.Hostname()
	for _, r := range host {
		if r >= utf8.RuneSelf {
			return badURL("host must be ASCII: write an internationalized domain name in its xn-- form, and addresses with ASCII digits and dots")
		}
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return badURL("must name a host")
	}

	var ip netip.Addr
	switch {
	case strings.HasPrefix(u.Host, "["):
		if ip, err = netip.ParseAddr(host); err != nil || !ip.Is6() {
			return badURL("host %s is not a valid IPv6 address", host)
		}
		if ip.Zone() != "" {
			return badURL("host %s must not carry an IPv6 zone", host)
		}
	case endsInNumber(host):
		// A DNS name never ends in a numeric label, and resolvers following
		// inet_aton read "0177.0.0.1", "0x7f.1" or "2130706433" as IPv4
		// addresses, so only the plain dotted-decimal form is accepted.
		ip, err = netip.ParseAddr(host)
		if err != nil || !ip.Is4() || ip.String() != host {
			return badURL("host %s is read as an IPv4 address in octal, hexadecimal or shortened form by some resolvers; write the address as four decimal numbers without leading zeros, such as 192.0.2.10, or use a DNS name", host)
		}
	}

	if ip.IsValid() {
		if err := g.CheckAddr("", ip); err != nil {
			var ae *AddressError
			errors.As(err, &ae)
			return &URLError{Reason: fmt.Sprintf("must not point at %s: %s", ip, ae.Reason), Err: err}
		}
		if u.Scheme == "http" && !g.covered(ip.Unmap()) {
			return badURL("must use https; http is allowed only for addresses BB_CALLBACK_ALLOW covers")
		}
		return nil
	}

	if !validHostName(host) {
		return badURL("host %s is not a valid DNS name", host)
	}
	listed := g.hostListed(host)
	if !listed && isInternalName(host) {
		return badURL("host %s names this machine or a cloud-internal service; add it to BB_CALLBACK_ALLOW if it really is the receiver", host)
	}
	if u.Scheme == "http" && !listed {
		return badURL("must use https; http is allowed only for hosts listed in BB_CALLBACK_ALLOW")
	}
	return nil
}

// isInternalName reports names that resolve to this machine (RFC 6761) or
// to cloud-internal services such as metadata.google.internal (".internal"
// is reserved for private use by ICANN).
func isInternalName(host string) bool {
	for _, n := range []string{"localhost", "internal", "localdomain"} {
		if host == n || strings.HasSuffix(host, "."+n) {
			return true
		}
	}
	return false
}

// endsInNumber reports whether the last label of host is a number in
// decimal or hexadecimal, the WHATWG URL standard's test for a host that
// must be parsed as IPv4.
// https://url.spec.whatwg.org/#ends-in-a-number-checker
func endsInNumber(host string) bool {
	labels := strings.Split(host, ".")
	last := labels[len(labels)-1]
	if last == "" && len(labels) > 1 {
		last = labels[len(labels)-2]
	}
	if last == "" {
		return false
	}
	if strings.Trim(last, "0123456789") == "" {
		return true
	}
	hex, ok := strings.CutPrefix(last, "0x")
	return ok && strings.Trim(hex, "0123456789abcdef") == ""
}

// validHostName reports whether host is a DNS name: dot-separated labels of
// 1 to 63 letters, digits, hyphens and underscores, 253 bytes in all.
func validHostName(host string) bool {
	if host == "" || len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// LookupFunc resolves a host name to its IP addresses.
type LookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// defaultLookup resolves with the system's resolver.
func defaultLookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// DialContextFunc returns a dial function for http.Transport that resolves
// the host with lookup (the system's resolver when nil) and connects to the
// first address that accepts. Every address is checked by the dialer's
// Control function, which runs after resolution and before the connection
// is made, so a name that resolves to an allowed address when the URL is
// checked and to a forbidden one later (DNS rebinding) is still refused.
func (g *Guard) DialContextFunc(lookup LookupFunc) func(ctx context.Context, network, address string) (net.Conn, error) {
	if lookup == nil {
		lookup = defaultLookup
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		host, portText, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", address, err)
		}
		port, err := strconv.ParseUint(portText, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("dial %s: bad port: %w", address, err)
		}
		// name is what a listed host name is matched against; a URL that
		// names an address has none.
		name := host
		var addrs []netip.Addr
		if ip, perr := netip.ParseAddr(host); perr == nil {
			addrs, name = []netip.Addr{ip}, ""
		} else {
			if addrs, err = lookup(ctx, host); err != nil {
				return nil, fmt.Errorf("resolve %s: %w", host, err)
			}
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
		d := net.Dialer{
			Control: func(_, address string, _ syscall.RawConn) error {
				ap, err := netip.ParseAddrPort(address)
				if err != nil {
					return fmt.Errorf("check address %s: %w", address, err)
				}
				return g.CheckAddr(name, ap.Addr())
			},
		}
		var errs []error
		for _, ip := range addrs {
			conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		return nil, errors.Join(errs...)
	}
}
