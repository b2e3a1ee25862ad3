package transport

import (
	"iter"
	"net/netip"
	"time"
)

// SourceWait bounds how long a core waits for IP's answer about a source
// (a connect over IPv6) before it fails the request (ETIMEDOUT): IP
// answers at once unless it is restarting, and its next generation is
// asked again.
const SourceWait = 20 * time.Second

// SourceQuestions are a core's questions to IP about the source address
// it would send to a destination from (Host.AskSource, servers/ops
// OpSource), each with what waits for its answer: tcp's socket making an
// active open, udp's OpConnect. It names each question with a key, finds
// it again by the key of IP's answer (SourceReceiver.Source) and gives up
// on it SourceWait after it was asked.
//
// The framework keeps the questions with its other requests to IP, so
// that the next generation of a restarted ip is asked again (step 3 of
// the restart protocol); here they only wait. An answer to a question
// given up on or forgotten finds nothing and is ignored: keys only grow,
// from 1 (0 can mean "none" to a core), Clear included, so a late answer
// is never taken for a newer question's.
//
// Like its core, it is used from the framework's goroutine only.
type SourceQuestions[T any] struct {
	ask   func(dst netip.Addr, key uint64) bool
	asked map[uint64]sourceQuestion[T]
	last  uint64 // the last key given
}

// sourceQuestion is a question to IP about the source to dst, asked at
// since for waiter.
type sourceQuestion[T any] struct {
	waiter T
	dst    netip.Addr
	since  time.Time
}

// NewSourceQuestions asks IP through ask (Host.AskSource).
func NewSourceQuestions[T any](ask func(dst netip.Addr, key uint64) bool) *SourceQuestions[T] {
	return &SourceQuestions[T]{ask: ask, asked: map[uint64]sourceQuestion[T]{}}
}

// Ask asks IP, for w, at now, which source it would send to dst from,
// and returns the question's key. false: the question could not be
// queued (Host.AskSource) and nothing waits; its key is used up.
func (q *SourceQuestions[T]) Ask(dst netip.Addr, w T, now time.Time) (key uint64, ok bool) {
	q.last++
	if !q.ask(dst, q.last) {
		return q.last, false
	}
	q.asked[q.last] = sourceQuestion[T]{waiter: w, dst: dst, since: now}
	return q.last, true
}

// Asked is the destination question key is about, while it waits.
func (q *SourceQuestions[T]) Asked(key uint64) (dst netip.Addr, ok bool) {
	a, ok := q.asked[key]
	return a.dst, ok
}

// Answer ends question key, for IP's answer to it: it returns who waits
// and the destination. false: no such question waits (given up on,
// forgotten, answered already).
func (q *SourceQuestions[T]) Answer(key uint64) (w T, dst netip.Addr, ok bool) {
	a, ok := q.asked[key]
	delete(q.asked, key)
	return a.waiter, a.dst, ok
}

// Forget ends, without an answer, the questions gone says nobody waits
// for any more.
func (q *SourceQuestions[T]) Forget(gone func(key uint64, w T) bool) {
	for key, a := range q.asked {
		if gone(key, a.waiter) {
			delete(q.asked, key)
		}
	}
}

// Expire gives up on the questions asked SourceWait or longer before now,
// ending each and then calling timedOut with it, and returns when the
// next of the others is due (zero: none waits).
func (q *SourceQuestions[T]) Expire(now time.Time, timedOut func(w T, dst netip.Addr)) time.Time {
	var next time.Time
	for key, a := range q.asked {
		due := a.since.Add(SourceWait)
		if now.Before(due) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		delete(q.asked, key)
		timedOut(a.waiter, a.dst)
	}
	return next
}

// Len is how many questions wait.
func (q *SourceQuestions[T]) Len() int { return len(q.asked) }

// Clear ends every question without an answer (their waiters are gone);
// keys go on growing.
func (q *SourceQuestions[T]) Clear() { clear(q.asked) }

// Waiters are who waits for the questions, in no order.
func (q *SourceQuestions[T]) Waiters() iter.Seq[T] {
	return func(yield func(T) bool) {
		for _, a := range q.asked {
			if !yield(a.waiter) {
				return
			}
		}
	}
}
