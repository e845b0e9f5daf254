// Command coredns is the cluster DNS of testenv's `node` part: CoreDNS with
// only the plugins its Corefile uses (bind, errors, cache, kubernetes,
// forward), which builds in a fraction of the time of the full CoreDNS.
// scripts/testenv.sh builds it; nothing in the project imports it.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

func main() {
	coremain.Run()
}
