package lab

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Print writes the report as tables: the pod matrix with the path of each
// pair, the path-MTU probes and the bulk transfer.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SRC\tDST\tPATH\tICMP\tTCP\tRESULT")
	for _, p := range r.Pairs {
		fmt.Fprintf(tw, "%s/%s %s\t%s/%s %s\t%s\t%s\t%s\t%s\n", p.Src.Node, p.Src.Name, p.Src.Addr,
			p.Dst.Node, p.Dst.Name, p.Dst.Addr, p.Path, p.ICMP, p.TCP, passFail(p.OK(), p.Err))
	}
	fmt.Fprintln(tw, "\nMTU SRC\tDST\tPATH\tEXPECTED\tAT MTU\tMTU+1\tRESULT")
	for _, m := range r.MTU {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", m.Src, m.Dst, m.Path, m.Expected, m.At, m.Above, passFail(m.OK(), m.Err))
	}
	if b := r.Bulk; b != nil {
		rate := 0.0
		if b.Took > 0 {
			rate = float64(2*b.Bytes) * 8 / b.Took.Seconds() / 1e6
		}
		fmt.Fprintf(tw, "\nBULK %s -> %s\t%s\t%d bytes echoed in %v (%.0f Mbit/s)\t%s\n",
			b.Src.Addr, b.Dst.Addr, b.Path, b.Bytes, b.Took.Round(1e6), rate, passFail(b.Err == "", b.Err))
	}
	tw.Flush()
	if r.OK() {
		fmt.Fprintln(w, "ALL CHECKS PASSED")
	} else {
		fmt.Fprintln(w, "SOME CHECKS FAILED")
	}
}

func passFail(ok bool, err string) string {
	switch {
	case ok:
		return "ok"
	case err != "":
		return "FAIL: " + err
	}
	return "FAIL"
}
