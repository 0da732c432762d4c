// A CoreDNS with only the plugins the test bed's real node needs: it answers for the cluster domain from the
// Kubernetes API (Services, EndpointSlices, Pods) on the node bridge's address. Nothing is forwarded: no
// resolver outside the machine may be asked, so a name outside the cluster domain is refused at once instead of
// timing out. Five plugins instead of CoreDNS's ~60 keep the cold build short (tests/testbed/README.md).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The directives in CoreDNS's execution order (that of its plugin.cfg), restricted to the plugins imported above.
var directives = []string{"bind", "ready", "errors", "cache", "kubernetes"}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
