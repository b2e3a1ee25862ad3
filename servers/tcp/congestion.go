package tcp

import (
	"math"
	"time"
)

// Congestion is a congestion-avoidance algorithm: how the congestion window
// grows on ACKs and how far it falls on a loss. The Endpoint owns cwnd and
// ssthresh and runs loss recovery itself (recovery.go: RFC 6675 with SACK,
// RFC 6582 NewReno without, RFC 5681 slow start after a timeout); an
// algorithm only decides growth and reduction. One value per connection.
type Congestion interface {
	// OnAck is called for an ACK of acked new bytes outside loss recovery
	// and returns the new cwnd, in bytes.
	OnAck(cwnd, ssthresh, acked, mss int, now time.Time, srtt time.Duration) int
	// OnLoss is called at a loss event — entering fast recovery, or the
	// first RTO of an episode — and returns the new ssthresh, in bytes. It
	// is called once per loss episode (until SND.UNA passes what was sent
	// when it began), however many segments were lost and timeouts came.
	// A reduction later shown needless is undone by the Endpoint, which
	// restores cwnd and ssthresh without telling the algorithm.
	OnLoss(cwnd, flight, mss int, now time.Time) int
}

// NewReno is RFC 5681 slow start and congestion avoidance (appropriate
// byte counting, L=1 SMSS per ACK in slow start) with the RFC 6582 loss
// response: ssthresh = max(FlightSize/2, 2*SMSS).
type NewReno struct {
	bytesAcked int // in congestion avoidance, since cwnd last grew
}

func (r *NewReno) OnAck(cwnd, ssthresh, acked, mss int, _ time.Time, _ time.Duration) int {
	if cwnd < ssthresh {
		return cwnd + min(acked, mss)
	}
	r.bytesAcked += acked
	if r.bytesAcked >= cwnd {
		r.bytesAcked -= cwnd
		cwnd += mss
	}
	return cwnd
}

func (r *NewReno) OnLoss(cwnd, flight, mss int, _ time.Time) int {
	r.bytesAcked = 0
	return max(flight/2, 2*mss)
}

// CUBIC is RFC 9438: the window follows W(t) = C*(t-K)^3 + Wmax after a
// loss, never below the Reno-friendly estimate, with multiplicative
// decrease β = 0.7 and fast convergence. Slow start is standard.
type CUBIC struct {
	wMax       float64   // segments, the window before the last reduction
	k          float64   // seconds until W reaches wMax again
	epochStart time.Time // start of the current congestion-avoidance epoch; zero: none
	wEst       float64   // segments, the Reno-friendly estimate
	cwndSeg    float64   // segments, fractional cwnd
}

const (
	cubicC    = 0.4
	cubicBeta = 0.7
)

func (c *CUBIC) OnAck(cwnd, ssthresh, acked, mss int, now time.Time, srtt time.Duration) int {
	if cwnd < ssthresh {
		c.cwndSeg = 0
		return cwnd + min(acked, mss)
	}
	m := float64(mss)
	if c.cwndSeg == 0 || math.Abs(c.cwndSeg*m-float64(cwnd)) >= m {
		c.cwndSeg = float64(cwnd) / m
	}
	if c.epochStart.IsZero() {
		c.epochStart = now
		c.wEst = c.cwndSeg
		if c.wMax > c.cwndSeg {
			c.k = math.Cbrt((c.wMax - c.cwndSeg) / cubicC)
		} else {
			c.k, c.wMax = 0, c.cwndSeg
		}
	}
	t := now.Sub(c.epochStart).Seconds() + srtt.Seconds()
	target := cubicC*math.Pow(t-c.k, 3) + c.wMax
	target = math.Max(c.cwndSeg, math.Min(target, 1.5*c.cwndSeg))
	segs := float64(acked) / m
	c.wEst += 3 * (1 - cubicBeta) / (1 + cubicBeta) * segs / c.cwndSeg
	if target < c.wEst {
		c.cwndSeg = math.Max(c.cwndSeg, c.wEst)
	} else {
		c.cwndSeg += (target - c.cwndSeg) / c.cwndSeg * segs
	}
	return max(cwnd, int(c.cwndSeg*m))
}

func (c *CUBIC) OnLoss(cwnd, flight, mss int, _ time.Time) int {
	w := float64(cwnd) / float64(mss)
	if w < c.wMax {
		c.wMax = w * (1 + cubicBeta) / 2 // fast convergence
	} else {
		c.wMax = w
	}
	c.epochStart = time.Time{}
	c.cwndSeg = 0
	return max(int(float64(cwnd)*cubicBeta), 2*mss)
}
