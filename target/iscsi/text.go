package iscsi

import (
	"github.com/lunway/lunway/target/pdu"
)

// textState is the reader-owned state of a Text negotiation: a request
// spanning several PDUs (C bit) and a response too long for one PDU.
type textState struct {
	asm     pdu.TextAssembler
	itt     uint32
	ttt     uint32
	pending []byte // response text not sent yet
}

// maxTextResponse caps the text a target answers with.
const maxTextResponse = 1 << 20

// textRequest handles a Text Request: SendTargets (in discovery and normal
// sessions); other keys are answered NotUnderstood (or Irrelevant for
// login-only keys).
func (c *conn) textRequest(h *pdu.BHS, data []byte) {
	var r pdu.TextRequest
	r.Decode(h)
	ts := &c.text
	respond := func(text []byte, final, cont bool, ttt uint32) {
		p := c.newOut()
		(&pdu.TextResponse{Final: final, Continue: cont, LUN: r.LUN, ITT: r.ITT, TTT: ttt}).Encode(&p.bhs)
		p.data = text
		p.advanceStatSN = true
		c.queue(p)
	}
	if r.TTT != pdu.ReservedTag {
		if r.TTT != ts.ttt || r.ITT != ts.itt || ts.pending == nil && !ts.asm.Pending() {
			c.reject(pdu.RejectInvalidPDUField, h)
			return
		}
		if ts.pending != nil {
			// The initiator asks for the rest of our long response.
			c.sendTextChunk(respond)
			return
		}
		// Otherwise: the next part of the initiator's request.
	} else {
		// A new request resets a continued negotiation (RFC 7143 11.10.4).
		ts.pending = nil
		if ts.asm.Pending() {
			ts.asm.Reset()
		}
	}
	text, done, err := ts.asm.Add(data, r.Continue)
	if err != nil {
		ts.asm.Reset()
		c.reject(pdu.RejectProtocolError, h)
		return
	}
	if !done {
		// Ask for the rest of the request: an empty response with a TTT.
		c.nextTTT++
		if c.nextTTT == pdu.ReservedTag {
			c.nextTTT = 1
		}
		ts.itt, ts.ttt = r.ITT, c.nextTTT
		respond(nil, false, false, ts.ttt)
		return
	}
	kvs, err := pdu.ParseText(text)
	if err != nil {
		c.reject(pdu.RejectProtocolError, h)
		return
	}
	var answer []byte
	for _, kv := range kvs {
		switch kv.Key {
		case "SendTargets":
			answer = c.sendTargets(answer, kv.Value)
		default:
			v := pdu.NotUnderstood
			if def, ok := pdu.LookupKey(kv.Key); ok {
				if def.Phase == pdu.LoginOnly {
					v = pdu.RejectValue
				} else if kv.Key == "MaxRecvDataSegmentLength" {
					// Renegotiation in full feature phase is not supported.
					v = pdu.RejectValue
				} else {
					v = pdu.Irrelevant
				}
			}
			answer = pdu.AppendText(answer, pdu.KV{Key: kv.Key, Value: v})
		}
		if len(answer) > maxTextResponse {
			answer = answer[:0]
			break
		}
	}
	ts.itt = r.ITT
	ts.pending = answer
	if len(answer) == 0 {
		ts.pending = []byte{}
	}
	c.sendTextChunk(respond)
}

// sendTextChunk sends the next piece of a pending text response.
func (c *conn) sendTextChunk(respond func(text []byte, final, cont bool, ttt uint32)) {
	ts := &c.text
	maxSeg := c.params.MaxRecvDataSegmentLength
	if len(ts.pending) <= maxSeg {
		respond(ts.pending, true, false, pdu.ReservedTag)
		ts.pending = nil
		return
	}
	c.nextTTT++
	if c.nextTTT == pdu.ReservedTag {
		c.nextTTT = 1
	}
	ts.ttt = c.nextTTT
	chunk := ts.pending[:maxSeg]
	ts.pending = ts.pending[maxSeg:]
	respond(chunk, false, true, ts.ttt)
}

// sendTargets appends the SendTargets answer: every target the initiator
// may log into (All), or the named one, or this session's target (empty
// value in a normal session), each with the portals of the groups that
// expose it.
func (c *conn) sendTargets(dst []byte, value string) []byte {
	only := ""
	switch {
	case value == "All":
		if !c.sess.discovery {
			// RFC 7143 13.8 / appendix C: All only in discovery sessions.
			return pdu.AppendText(dst, pdu.KV{Key: "SendTargets", Value: pdu.RejectValue})
		}
	case value == "":
		if t := c.targetEntry(); t != nil {
			only = t.cfg.Name
		} else {
			return dst
		}
	default:
		only = value
	}
	for _, t := range c.srv.targetList(c.sess.initiatorName, c.remote.Addr(), only) {
		addrs := c.srv.portalAddrs(t, c.local.Addr())
		if len(addrs) == 0 && !t.exposes(c.tpgt) {
			continue // no portal serves it: not reachable
		}
		dst = pdu.AppendText(dst, pdu.KV{Key: "TargetName", Value: t.cfg.Name})
		for _, a := range addrs {
			dst = pdu.AppendText(dst, pdu.KV{Key: "TargetAddress", Value: a})
		}
	}
	return dst
}
