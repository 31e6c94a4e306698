//go:build linux

package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
)

// stormReport is a storm run's results.
type stormReport struct {
	Machine string      `json:"machine"`
	Command string      `json:"command"`
	Work    stormWork   `json:"workload"`
	Rows    []*stormRow `json:"rows"`
}

// machineInfo describes this machine: cores, CPU, memory, kernel.
func machineInfo() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			mem = humanize.IBytes(kb << 10)
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d cores (%s), %s, Linux %s", runtime.NumCPU(), model, mem, strings.TrimSpace(string(kernel)))
}

func (rep *stormReport) groups() (keys []string, ns []int) {
	for _, r := range rep.Rows {
		k := r.Target + " @ " + r.Rate
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
		if !slices.Contains(ns, r.N) {
			ns = append(ns, r.N)
		}
	}
	slices.Sort(ns)
	return keys, ns
}

func (rep *stormReport) row(key string, n int) *stormRow {
	for _, r := range rep.Rows {
		if r.Target+" @ "+r.Rate == key && r.N == n {
			return r
		}
	}
	return nil
}

// failed says whether the row had an error or a wrong digest (a target
// skipped for a missing tool is neither).
func (r *stormRow) failed() bool {
	return len(r.Errors) > 0 || (r.DigestOK != r.N && !strings.HasPrefix(r.Note, "skipped"))
}

// table is the report as Markdown: the thesis-like table (seconds until
// the last workstation's VM is usable / its changes are on the server,
// by target and N), then every measurement.
func (rep *stormReport) table() string {
	var b strings.Builder
	keys, ns := rep.groups()
	w := rep.Work
	fmt.Fprintf(&b, "Per workstation: a %s clone, %s read in runs of 64 KiB-1 MiB requests, %s in 4 KiB writes (%s), fsync at the end.\n",
		humanize.IBytes(uint64(w.Size)), humanize.IBytes(uint64(w.Read)), humanize.IBytes(uint64(w.Write)),
		map[bool]string{false: "uniform", true: "clustered"}[w.Locality])
	fmt.Fprintf(&b, "Machine: %s. Command: `%s`.\n\n", rep.Machine, rep.Command)
	b.WriteString("Seconds until the last workstation's workload completed / its changes were durable on the server:\n\n| target |")
	for _, n := range ns {
		fmt.Fprintf(&b, " N=%d |", n)
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- |", len(ns)) + "\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s |", k)
		for _, n := range ns {
			r := rep.row(k, n)
			switch {
			case r == nil:
				b.WriteString(" |")
			case strings.HasPrefix(r.Note, "skipped"):
				fmt.Fprintf(&b, " %s |", r.Note)
			case r.failed():
				b.WriteString(" FAILED |")
			default:
				fmt.Fprintf(&b, " %.2f / %.2f |", pct(r.Work, 1), pct(r.Durable, 1))
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n| target | N | work p50 / max s | durable max s | to ws | from ws | server disk written | server CPU s | CPU s per ws (work / all) | read p50 / p99 ms | write p50 / p99 ms | fsync max ms | digests | notes |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rep.Rows {
		note := r.Note
		if len(r.Errors) > 0 {
			note = strings.TrimSpace(note + " ERROR: " + strings.ReplaceAll(strings.Join(r.Errors, "; "), "\n", " "))
			if len(note) > 300 {
				note = note[:300] + "..."
			}
		}
		fmt.Fprintf(&b, "| %s @ %s | %d | %.2f / %.2f | %.2f | %s | %s | %s | %.2f | %.2f / %.2f | %.2f / %.1f | %.3f / %.1f | %.0f | %d/%d | %s |\n",
			r.Target, r.Rate, r.N, pct(r.Work, 0.5), pct(r.Work, 1), pct(r.Durable, 1),
			humanize.IBytes(uint64(r.ToWS)), humanize.IBytes(uint64(r.FromWS)), humanize.IBytes(uint64(max(0, r.DiskW))),
			r.SrvCPU, mean(r.WSCPUWork), mean(r.WSCPU), r.ReadP50, r.ReadP99, r.WriteP50, r.WriteP99, r.SyncMax, r.DigestOK, r.N, note)
	}
	b.WriteString(rep.goals())
	return b.String()
}

// goals holds each rate and N's dvfs row against the goals (issue
// 20): work time and CPU per workstation as ratios to the local disk (goal
// at most 1.3x and 1.5x) and to the FUSE floor (`fuse`: a go-fuse
// loopback of the local disk, what any FUSE filesystem costs at least);
// direct SMB's time over dvfs's (goal at least 5x at N=30); bytes from the
// workstations over the bytes the guests wrote (goal at most 1.3x). A
// ratio needs both rows, without errors.
func (rep *stormReport) goals() string {
	var b strings.Builder
	ratio := func(x, y float64) string {
		if y <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", x/y)
	}
	ok := func(r *stormRow) bool { return r != nil && !r.failed() && !strings.HasPrefix(r.Note, "skipped") }
	for _, r := range rep.Rows {
		if r.Target != "dvfs" || !ok(r) {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\nGoals, dvfs (warm caches) against the others at the same rate and N (work: until the workload completed, the last workstation; CPU: per workstation, until its workload completed / in all):\n\n")
			b.WriteString("| rate | N | work / local (≤1.3x) | work / fuse | CPU / local (≤1.5x) | CPU / fuse | smb / dvfs work (≥5x at N=30) | from ws / written (≤1.3x) |\n")
			b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
		}
		key := " @ " + r.Rate
		local, fuse, smb := rep.row("local"+key, r.N), rep.row("fuse"+key, r.N), rep.row("smb"+key, r.N)
		cell := func(o *stormRow, f func(*stormRow) float64) string {
			if !ok(o) {
				return "-"
			}
			return ratio(f(r), f(o))
		}
		work := func(x *stormRow) float64 { return pct(x.Work, 1) }
		cpu := func(x *stormRow) string {
			if !ok(x) {
				return "-"
			}
			return ratio(mean(r.WSCPUWork), mean(x.WSCPUWork)) + " / " + ratio(mean(r.WSCPU), mean(x.WSCPU))
		}
		smbCell := "-"
		if ok(smb) {
			smbCell = ratio(pct(smb.Work, 1), pct(r.Work, 1))
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", r.Rate, r.N, cell(local, work), cell(fuse, work), cpu(local), cpu(fuse),
			smbCell, ratio(float64(r.FromWS), float64(int64(r.N)*rep.Work.Write)))
	}
	return b.String()
}

// write puts storm.txt, storm.json, storm.csv, storm-time.svg and
// storm-bytes.svg into dir.
func (rep *stormReport) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "storm.txt"), []byte(rep.table()), 0o644); err != nil {
		return err
	}
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "storm.json"), j, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "storm.csv"))
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	cw.Write([]string{"target", "rate", "n", "work_p50_s", "work_max_s", "durable_p50_s", "durable_max_s", "bytes_to_ws", "bytes_from_ws",
		"server_disk_write_bytes", "server_cpu_s", "ws_cpu_mean_s", "ws_cpu_work_mean_s", "read_p50_ms", "read_p99_ms", "write_p50_ms", "write_p99_ms",
		"fsync_max_ms", "digests_ok", "fill_s", "fill_bytes", "errors", "note"})
	ff := func(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }
	for _, r := range rep.Rows {
		cw.Write([]string{r.Target, r.Rate, strconv.Itoa(r.N), ff(pct(r.Work, 0.5)), ff(pct(r.Work, 1)), ff(pct(r.Durable, 0.5)), ff(pct(r.Durable, 1)),
			strconv.FormatInt(r.ToWS, 10), strconv.FormatInt(r.FromWS, 10), strconv.FormatInt(r.DiskW, 10), ff(r.SrvCPU), ff(mean(r.WSCPU)), ff(mean(r.WSCPUWork)),
			ff(r.ReadP50), ff(r.ReadP99), ff(r.WriteP50), ff(r.WriteP99), ff(r.SyncMax), strconv.Itoa(r.DigestOK), ff(r.Fill),
			strconv.FormatInt(r.FillTo, 10), strings.Join(r.Errors, "; "), r.Note})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "storm-time.svg"), []byte(rep.timeSVG()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "storm-bytes.svg"), []byte(rep.bytesSVG()), 0o644)
}

var svgColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// timeSVG plots the time until the last workstation's changes were
// durable against N, a line per target.
func (rep *stormReport) timeSVG() string {
	keys, ns := rep.groups()
	const W, H, L, R, T, B = 720, 420, 60, 200, 30, 50
	var ymax float64
	for _, r := range rep.Rows {
		if !r.failed() {
			ymax = max(ymax, pct(r.Durable, 1))
		}
	}
	ymax = max(ymax*1.1, 0.1)
	nmax := float64(slices.Max(ns))
	x := func(n int) float64 { return L + float64(n)/nmax*(W-L-R) }
	y := func(v float64) float64 { return H - B - v/ymax*(H-T-B) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="18" font-size="14">seconds until the last workstation's changes are on the server</text>`+"\n", L)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", L, H-B, W-R, H-B, L, T, L, H-B)
	for k := 0; k <= 4; k++ {
		v := ymax * float64(k) / 4
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%.1f</text>`+"\n", L-5, y(v)+4, v)
	}
	for _, n := range ns {
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%d</text>`+"\n", x(n), H-B+16, n)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">workstations (N)</text>`+"\n", (L+W-R)/2, H-12)
	for ki, k := range keys {
		c := svgColors[ki%len(svgColors)]
		var pts []string
		for _, n := range ns {
			if r := rep.row(k, n); r != nil && !r.failed() && !strings.HasPrefix(r.Note, "skipped") {
				px, py := x(n), y(pct(r.Durable, 1))
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px, py, c)
			}
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), c)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", W-R+15, T+ki*18, c, W-R+32, T+ki*18+11, k)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// bytesSVG shows the bytes over the server link in each direction per
// target, at the largest N.
func (rep *stormReport) bytesSVG() string {
	keys, ns := rep.groups()
	n := slices.Max(ns)
	const W, H, L, R, T, B = 720, 420, 60, 20, 30, 110
	var vmax float64
	for _, k := range keys {
		if r := rep.row(k, n); r != nil {
			vmax = max(vmax, float64(r.ToWS), float64(r.FromWS))
		}
	}
	vmax = max(vmax*1.1, 1<<20)
	slot := float64(W-L-R) / float64(max(1, len(keys)))
	y := func(v float64) float64 { return H - B - v/vmax*(H-T-B) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="18" font-size="14">bytes over the server link, N=%d: to workstations (blue), from them (red)</text>`+"\n", L, n)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", L, H-B, W-R, H-B)
	for k := 0; k <= 4; k++ {
		v := vmax * float64(k) / 4
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%s</text>`+"\n", L-5, y(v)+4, humanize.IBytes(uint64(v)))
	}
	for ki, k := range keys {
		r := rep.row(k, n)
		if r == nil {
			continue
		}
		x0 := float64(L) + float64(ki)*slot + slot*0.15
		bw := slot * 0.35
		for j, v := range []int64{r.ToWS, r.FromWS} {
			c := []string{"#1f77b4", "#d62728"}[j]
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x0+float64(j)*bw, y(float64(v)), bw, float64(H-B)-y(float64(v)), c)
		}
		fmt.Fprintf(&b, `<text transform="translate(%.1f,%d) rotate(30)">%s</text>`+"\n", x0, H-B+14, k)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
