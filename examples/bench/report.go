package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// printTable writes the human-readable report.
func printTable(w io.Writer, rep *report) {
	fmt.Fprintf(w, "gozone bench: mode=%s, %d round(s) of %.0fs per path and test, tunnel MTU %d, %d CPUs, kernel %s\n",
		rep.Mode, rep.Rounds, rep.DurationS, rep.TunnelMTU, rep.CPUs, rep.Kernel)
	if rep.Tree != "" {
		fmt.Fprintf(w, "built from %s\n", rep.Tree)
	}
	fmt.Fprintf(w, "elapsed %.0fs; CPU steal over the whole run %.1f%%; figures are received Gbit/s (CPU steal %% / busy %% of all CPUs during that run)\n\n", rep.ElapsedS, rep.StealTotal)

	fmt.Fprintln(w, "paths:")
	for _, p := range rep.Paths {
		fmt.Fprintf(w, "  %-18s %s\n", p.Name, p.Desc)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	hdr := []string{"test", "path"}
	for r := 0; r < rep.Rounds; r++ {
		hdr = append(hdr, fmt.Sprintf("round %d", r+1))
	}
	hdr = append(hdr, "median", "×wireguard-go", "TCP retransmits")
	fmt.Fprintln(tw, strings.Join(hdr, "\t"))
	for _, c := range rep.Results {
		if !c.Available {
			continue // listed once below the table
		}
		row := []string{c.Test, c.Path}
		for r := 0; r < rep.Rounds; r++ {
			row = append(row, runCell(c, r))
		}
		med := fmt.Sprintf("%.3f", c.MedianGbps)
		if c.MedianLossPercent != nil {
			med += fmt.Sprintf(" loss %.2f%%", *c.MedianLossPercent)
		}
		ratio := "-"
		if c.MedianRatioVsWG != nil {
			ratio = fmt.Sprintf("%.2f", *c.MedianRatioVsWG)
		}
		row = append(row, med, ratio, retransmitCell(c, rep.Rounds))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	for _, p := range rep.Paths {
		if !p.Available {
			fmt.Fprintf(w, "%-12s %-18s %s\n", "(all tests)", p.Name, p.Note)
		}
	}

	printQueueCompare(w, rep.QueueCompare)

	fmt.Fprintln(w, "\nCPU seconds per GB received (user+system of each process):")
	for _, p := range rep.Paths {
		switch {
		case !p.Available:
			fmt.Fprintf(w, "  %-18s %s\n", p.Name, p.Note)
		case len(p.CPUSecondsPerGB) == 0:
			fmt.Fprintf(w, "  %-18s - (kernel only, no process)\n", p.Name)
		default:
			names := make([]string, 0, len(p.CPUSecondsPerGB))
			for n := range p.CPUSecondsPerGB {
				names = append(names, n)
			}
			sort.Strings(names)
			var parts []string
			for _, n := range names {
				parts = append(parts, fmt.Sprintf("%s %.2f", n, p.CPUSecondsPerGB[n]))
			}
			fmt.Fprintf(w, "  %-18s %s\n", p.Name, strings.Join(parts, ", "))
		}
	}

	switch {
	case rep.SetupSkipped:
		fmt.Fprintln(w, "\nconnection set-up: skipped (--setup=false)")
	case len(rep.Setup) > 0:
		fmt.Fprintln(w, "\nconnection set-up:")
	}
	for _, s := range rep.Setup {
		printSetup(w, s)
	}
	printProfiles(w, rep)
	if len(rep.Problems) > 0 {
		fmt.Fprintln(w, "\nproblems:")
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
}

func runCell(c *cell, round int) string {
	for _, r := range c.Runs {
		if r.Round != round {
			continue
		}
		if r.Error != "" {
			return "error"
		}
		s := fmt.Sprintf("%.3f (%.0f/%.0f)", r.Gbps, r.StealPercent, r.BusyPercent)
		if c.MedianLossPercent != nil {
			s = fmt.Sprintf("%.3f loss %.2f%% (%.0f/%.0f)", r.Gbps, r.LostPercent, r.StealPercent, r.BusyPercent)
		}
		return s
	}
	return "-"
}

// printSetup writes one set-up line: the median of the successful probes,
// how many failed, and where their logs are.
func printSetup(w io.Writer, s *setupResult) {
	if s.N == 0 && s.Failed == 0 {
		fmt.Fprintf(w, "  %-18s %s\n", s.Path, s.Note)
		return
	}
	if s.N > 0 {
		fmt.Fprintf(w, "  %-18s median %.2f ms; %d ok, %d failed (%s)", s.Path, s.MedianMs, s.N, s.Failed, s.What)
	} else {
		fmt.Fprintf(w, "  %-18s no median; %d ok, %d failed (%s)", s.Path, s.N, s.Failed, s.What)
	}
	if s.Note != "" {
		fmt.Fprintf(w, "; %s", s.Note)
	}
	fmt.Fprintln(w)
	for _, e := range s.Errors {
		fmt.Fprintf(w, "  %-18s   %s\n", "", e)
	}
	if s.FailureLog != "" {
		fmt.Fprintf(w, "  %-18s   logs of the failed probes: %s\n", "", s.FailureLog)
	}
}
