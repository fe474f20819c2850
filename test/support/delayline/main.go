// delayline: a userspace delay line with jitter for one direction of a network namespace's
// traffic, for kernels built without sch_netem. It creates a TUN device in the namespace it runs
// in; the caller routes the traffic to be delayed into it (`ip route replace DEST/32 dev TUN`).
// Every IP packet read from the TUN is sent, after delay ± jitter (uniform, independently per
// packet, so packets may be reordered — as netem does with jitter and no rate), out of a real
// interface through an AF_PACKET socket with the given destination MAC. Nothing is dropped.
//
// The delayed traffic is the kernel's own: TCP segments, SYN-ACKs and RSTs of connection
// attempts, ICMP — which a proxy in userspace could not delay.
//
// Usage: delayline -tun NAME -out IFACE -dst-mac MAC -delay MS -jitter MS [-seed N]
// Prints "ready" on stdout once the TUN device exists; runs until SIGTERM/SIGINT. Counts of
// packets forwarded and failed sends go to stderr at exit.
package main

import (
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	tunSetIff = 0x400454ca
	iffTun    = 0x0001
	iffNoPi   = 0x1000
)

type ifreq struct {
	name  [16]byte
	flags uint16
	_     [22]byte
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "delayline: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	tunName := flag.String("tun", "", "TUN device to create")
	outName := flag.String("out", "", "interface the delayed packets leave by")
	dstMac := flag.String("dst-mac", "", "destination MAC of the delayed frames")
	delayMs := flag.Float64("delay", 100, "mean delay (ms)")
	jitterMs := flag.Float64("jitter", 100, "jitter (ms): uniform in delay ± jitter, never below 0")
	seed := flag.Int64("seed", time.Now().UnixNano(), "random seed")
	flag.Parse()
	if *tunName == "" || *outName == "" || *dstMac == "" {
		fail("-tun, -out and -dst-mac are required")
	}
	mac, err := net.ParseMAC(*dstMac)
	if err != nil || len(mac) != 6 {
		fail("bad -dst-mac %q", *dstMac)
	}
	out, err := net.InterfaceByName(*outName)
	if err != nil {
		fail("interface %s: %v", *outName, err)
	}

	tun, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		fail("open /dev/net/tun: %v", err)
	}
	var req ifreq
	copy(req.name[:], *tunName)
	req.flags = iffTun | iffNoPi
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(tun), tunSetIff, uintptr(unsafe.Pointer(&req))); e != 0 {
		fail("TUNSETIFF %s: %v", *tunName, e)
	}

	pkt, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(syscall.ETH_P_IP)))
	if err != nil {
		fail("AF_PACKET socket: %v", err)
	}
	var sent, failed atomic.Int64
	rng := rand.New(rand.NewSource(*seed))
	send := func(b []byte) {
		proto := uint16(syscall.ETH_P_IP)
		if len(b) > 0 && b[0]>>4 == 6 {
			proto = syscall.ETH_P_IPV6
		}
		to := &syscall.SockaddrLinklayer{Protocol: htons(proto), Ifindex: out.Index, Halen: 6}
		copy(to.Addr[:], mac)
		if err := syscall.Sendto(pkt, b, 0, to); err != nil {
			failed.Add(1) // link down (a powered-off host): the packet is lost, as on a wire
			return
		}
		sent.Add(1)
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		fmt.Fprintf(os.Stderr, "delayline: %d packets forwarded, %d sends failed\n", sent.Load(), failed.Load())
		os.Exit(0)
	}()

	fmt.Println("ready")
	buf := make([]byte, 65536)
	for {
		n, err := syscall.Read(tun, buf)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			fail("read %s: %v", *tunName, err)
		}
		b := make([]byte, n)
		copy(b, buf[:n])
		d := *delayMs + (rng.Float64()*2-1)*(*jitterMs)
		if d < 0 {
			d = 0
		}
		time.AfterFunc(time.Duration(d*float64(time.Millisecond)), func() { send(b) })
	}
}
