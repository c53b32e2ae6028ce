package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// TCP retransmits and the gateway TUN-queue target of issue 8: "2 TUN
// queues ≥ 1 queue on the gateway, with no more TCP retransmits". Both
// deployments run in the same rounds (alternating with the other paths),
// so the throughput figure is the median of same-round q2/q1 ratios, like
// the ratios against raw wireguard-go.

const (
	pathQ1 = "gozone-direct-q1"
	pathQ2 = "gozone-direct-q2"
)

// summarizeRetransmits fills a TCP cell's retransmit totals from its
// successful runs and adds them to the path's per-test record.
func summarizeRetransmits(c *cell, p *benchPath) {
	var total int64
	var bytes uint64
	known := false
	for _, r := range c.Runs {
		if r.Error != "" || r.Retransmits == nil {
			continue
		}
		known = true
		total += *r.Retransmits
		bytes += r.Bytes
	}
	if !known {
		return
	}
	c.Retransmits = &total
	if bytes > 0 {
		perGB := float64(total) / (float64(bytes) / 1e9)
		c.RetransmitsPerGB = &perGB
	}
	if p != nil {
		if p.TCPRetransmits == nil {
			p.TCPRetransmits = map[string]int64{}
		}
		p.TCPRetransmits[c.Test] = total
	}
}

// queueCompare is the q2-vs-q1 verdict for one TCP test.
type queueCompare struct {
	Test string `json:"test"`
	// Q1Gbps, Q2Gbps: median received Gbit/s of each deployment.
	Q1Gbps float64 `json:"q1_median_gbps"`
	Q2Gbps float64 `json:"q2_median_gbps"`
	// Ratio: median over rounds of q2/q1 in the same round.
	Ratio *float64 `json:"q2_over_q1_median_ratio,omitempty"`
	// Retransmits summed over the runs; per GB received for scale, as
	// a faster path may retransmit more in absolute terms.
	Q1Retransmits      int64   `json:"q1_retransmits"`
	Q2Retransmits      int64   `json:"q2_retransmits"`
	Q1RetransmitsPerGB float64 `json:"q1_retransmits_per_gb"`
	Q2RetransmitsPerGB float64 `json:"q2_retransmits_per_gb"`
	// Met: ratio ≥ 1 and q2 retransmitted no more than q1 (absolute).
	Met bool `json:"target_met"`
}

// compareQueues builds the q2-vs-q1 comparison of every TCP test in which
// both deployments ran (nil otherwise).
func compareQueues(rep *report) []queueCompare {
	byKey := map[[2]string]*cell{}
	for _, c := range rep.Results {
		byKey[[2]string{c.Test, c.Path}] = c
	}
	var out []queueCompare
	for _, tc := range rep.Tests {
		if tc.UDP {
			continue
		}
		q1, q2 := byKey[[2]string{tc.Name, pathQ1}], byKey[[2]string{tc.Name, pathQ2}]
		if q1 == nil || q2 == nil || !q1.Available || !q2.Available || q1.Retransmits == nil || q2.Retransmits == nil {
			continue
		}
		qc := queueCompare{Test: tc.Name, Q1Gbps: q1.MedianGbps, Q2Gbps: q2.MedianGbps,
			Q1Retransmits: *q1.Retransmits, Q2Retransmits: *q2.Retransmits}
		if q1.RetransmitsPerGB != nil {
			qc.Q1RetransmitsPerGB = *q1.RetransmitsPerGB
		}
		if q2.RetransmitsPerGB != nil {
			qc.Q2RetransmitsPerGB = *q2.RetransmitsPerGB
		}
		var ratios []float64
		for _, a := range q2.Runs {
			for _, b := range q1.Runs {
				if a.Round == b.Round && a.Error == "" && b.Error == "" && b.Gbps > 0 {
					ratios = append(ratios, a.Gbps/b.Gbps)
				}
			}
		}
		if len(ratios) > 0 {
			m := median(ratios)
			qc.Ratio = &m
			qc.Met = m >= 1 && qc.Q2Retransmits <= qc.Q1Retransmits
		}
		out = append(out, qc)
	}
	return out
}

// printQueueCompare writes the q2-vs-q1 section of the table.
func printQueueCompare(w io.Writer, qs []queueCompare) {
	if len(qs) == 0 {
		return
	}
	fmt.Fprintln(w, "\ngateway TUN queues, 2 vs 1 (target: q2 ≥ q1 with no more TCP retransmits):")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join([]string{"  test", "q1 Gbit/s", "q2 Gbit/s", "q2/q1", "retr q1", "retr q2", "retr/GB q1", "retr/GB q2", "target"}, "\t"))
	for _, q := range qs {
		ratio, verdict := "-", "no same-round pair"
		if q.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *q.Ratio)
			verdict = "met"
			if !q.Met {
				var why []string
				if *q.Ratio < 1 {
					why = append(why, fmt.Sprintf("q2 %.1f%% slower", 100*(1-*q.Ratio)))
				}
				if q.Q2Retransmits > q.Q1Retransmits {
					why = append(why, fmt.Sprintf("%d more retransmits", q.Q2Retransmits-q.Q1Retransmits))
				}
				verdict = "missed: " + strings.Join(why, ", ")
			}
		}
		fmt.Fprintf(tw, "  %s\t%.3f\t%.3f\t%s\t%d\t%d\t%.1f\t%.1f\t%s\n", q.Test, q.Q1Gbps, q.Q2Gbps, ratio,
			q.Q1Retransmits, q.Q2Retransmits, q.Q1RetransmitsPerGB, q.Q2RetransmitsPerGB, verdict)
	}
	tw.Flush()
}

// retransmitCell is the table's retransmit column: per round, then the
// total ("-" for UDP).
func retransmitCell(c *cell, rounds int) string {
	if c.Retransmits == nil {
		return "-"
	}
	var parts []string
	for r := 0; r < rounds; r++ {
		s := "-"
		for _, run := range c.Runs {
			if run.Round == r && run.Error == "" && run.Retransmits != nil {
				s = fmt.Sprint(*run.Retransmits)
			}
		}
		parts = append(parts, s)
	}
	if rounds == 1 {
		return parts[0]
	}
	return fmt.Sprintf("%s = %d", strings.Join(parts, "+"), *c.Retransmits)
}
