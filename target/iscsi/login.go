package iscsi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lunway/lunway/target/pdu"
	"github.com/lunway/lunway/target/scsi"
)

// loginMaxData caps a login PDU's data segment. Initiators must keep to
// 8192 during login; a little slack costs nothing.
const loginMaxData = 64 << 10

// loginError ends a login with a status class and detail.
type loginError struct {
	status uint16
	why    string
}

func (e *loginError) Error() string {
	return fmt.Sprintf("iscsi: login failed (status 0x%04x): %s", e.status, e.why)
}

func loginFail(status uint16, format string, a ...any) error {
	return &loginError{status: status, why: fmt.Sprintf(format, a...)}
}

// maxAHS caps TotalAHSLength in full feature phase: an extended CDB of
// pdu.MaxCDBLength plus an expected bidirectional read length fit.
const maxAHS = 512

// loginState is the target side of one login (RFC 7143 6.3, 10.12).
type loginState struct {
	c     *conn
	first bool
	isid  [6]byte
	tsih  uint16
	itt   uint32
	cid   uint16
	cmdSN uint32

	stage        uint8 // current stage
	authDone     bool
	auth         *chapAuth
	authMethod   string // negotiated AuthMethod
	sessionType  string
	initiator    string
	target       *targetEntry
	params       pdu.Params
	sentMRDSL    bool
	sentTPGT     bool
	negotiated   map[string]bool
	offeredImmed bool
	statSN       uint32
	text         pdu.TextAssembler
}

// testHookLoggedIn, set only by tests, runs when a login has succeeded
// (the session is registered and the final response sent), before the
// login deadline is cleared.
var testHookLoggedIn func(*conn)

// login runs the login phase to full feature phase. On success c.sess,
// c.params and c.target are set and the final Login Response was sent.
func (c *conn) login() error {
	if d := c.srv.opts.LoginTimeout; d > 0 {
		c.nc.SetDeadline(time.Now().Add(d))
	}
	ls := &loginState{c: c, first: true, params: pdu.DefaultParams(), negotiated: map[string]bool{}}
	ls.params.TargetMaxRecvDataSegmentLength = c.srv.opts.MaxRecvDataSegmentLength
	ls.statSN = 1
	for {
		var h pdu.BHS
		_, err := c.rd.ReadHeader(&h)
		if err != nil {
			return err
		}
		c.stats.pdusIn.Add(1)
		if h.Opcode() != pdu.OpLoginReq {
			if ls.first {
				return fmt.Errorf("%w: %v before login", errProtocol, h.Opcode())
			}
			return ls.fail(loginFail(pdu.LoginInvalidDuringLogin, "%v during login", h.Opcode()))
		}
		data := make([]byte, c.rd.Pending())
		if len(data) > 0 {
			if err := c.rd.ReadData(data); err != nil {
				return err
			}
		}
		c.stats.bytesIn.Add(uint64(pdu.BHSLen + len(data)))
		var req pdu.LoginRequest
		if err := req.Decode(&h); err != nil {
			return ls.fail(loginFail(pdu.LoginInitiatorError, "%v", err))
		}
		done, err := ls.step(&req, data)
		if err != nil {
			return ls.fail(err)
		}
		if done {
			if testHookLoggedIn != nil {
				testHookLoggedIn(c)
			}
			c.nc.SetDeadline(time.Time{})
			// The session became visible (CloseSession, Shutdown) when
			// it was registered, before this: an abort or drain that
			// came in between set a deadline the line above cleared.
			// Set it again, so the read loop sees it at once.
			if c.ctx.Err() != nil {
				c.nc.SetDeadline(time.Now())
			} else if c.draining.Load() {
				c.nc.SetReadDeadline(time.Now())
			}
			return nil
		}
	}
}

// fail sends the failure Login Response for err (after the failed-login
// delay for authentication and authorization failures) and returns err.
func (ls *loginState) fail(err error) error {
	c := ls.c
	var le *loginError
	if !errors.As(err, &le) {
		var ae *errAuth
		if errors.As(err, &ae) {
			le = &loginError{status: pdu.LoginAuthFailure, why: ae.why}
		} else {
			le = &loginError{status: pdu.LoginTargetError, why: err.Error()}
		}
	}
	t := ls.target
	switch le.status {
	case pdu.LoginAuthFailure, pdu.LoginAuthorizationFailure:
		if t != nil {
			if le.status == pdu.LoginAuthFailure {
				t.logins.authFailed.Add(1)
			} else {
				t.logins.denied.Add(1)
			}
		}
		delay := c.srv.limiter.fail(c.remote.Addr(), c.srv.opts.AuthFailureDelay, time.Now())
		c.log.Warn("login refused", "initiator", ls.initiator, "target", ls.targetName(),
			"status", fmt.Sprintf("0x%04x", le.status), "why", le.why, "delay", delay)
		if delay > 0 {
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-c.ctx.Done():
				timer.Stop()
				return err
			}
		}
	default:
		if t != nil {
			t.logins.failed.Add(1)
		}
		c.log.Info("login failed", "initiator", ls.initiator, "target", ls.targetName(),
			"status", fmt.Sprintf("0x%04x", le.status), "why", le.why)
	}
	resp := pdu.LoginResponse{CSG: ls.stage, ISID: ls.isid, ITT: ls.itt, StatSN: ls.statSN,
		ExpCmdSN: ls.cmdSN, MaxCmdSN: ls.cmdSN, Status: le.status}
	ls.write(&resp, nil)
	return err
}

func (ls *loginState) targetName() string {
	if ls.target != nil {
		return ls.target.cfg.Name
	}
	return ""
}

func (ls *loginState) write(resp *pdu.LoginResponse, text []byte) error {
	var b pdu.BHS
	resp.Encode(&b)
	buf := pdu.AppendPDU(make([]byte, 0, pdu.BHSLen+len(text)+8), &b, nil, text, false, false)
	n, err := ls.c.nc.Write(buf)
	ls.c.stats.pdusOut.Add(1)
	ls.c.stats.bytesOut.Add(uint64(n))
	return err
}

// step handles one Login Request. It returns done after the final response.
func (ls *loginState) step(req *pdu.LoginRequest, data []byte) (bool, error) {
	c := ls.c
	if ls.first {
		ls.isid, ls.tsih, ls.itt, ls.cid, ls.cmdSN = req.ISID, req.TSIH, req.ITT, req.CID, req.CmdSN
		ls.stage = req.CSG
		if req.VersionMin > 0 {
			return false, loginFail(pdu.LoginUnsupportedVersion, "version min %d", req.VersionMin)
		}
	} else {
		if req.ISID != ls.isid || req.TSIH != ls.tsih || req.CID != ls.cid {
			return false, loginFail(pdu.LoginInitiatorError, "ISID/TSIH/CID changed during login")
		}
		if req.CSG != ls.stage {
			return false, loginFail(pdu.LoginInitiatorError, "CSG %d, expected %d", req.CSG, ls.stage)
		}
		ls.itt, ls.cmdSN = req.ITT, req.CmdSN
	}
	if req.CSG == pdu.StageFullFeature {
		return false, loginFail(pdu.LoginInitiatorError, "CSG full feature")
	}
	if req.Transit && req.NSG <= req.CSG {
		return false, loginFail(pdu.LoginInitiatorError, "transit from stage %d to %d", req.CSG, req.NSG)
	}
	text, complete, err := ls.text.Add(data, req.Continue)
	if err != nil {
		return false, loginFail(pdu.LoginInitiatorError, "%v", err)
	}
	if !complete {
		// Ask for the rest of the text: an empty response, same stage.
		resp := pdu.LoginResponse{CSG: ls.stage, NSG: 0, ISID: ls.isid, TSIH: ls.tsih, ITT: ls.itt,
			StatSN: ls.statSN, ExpCmdSN: ls.cmdSN, MaxCmdSN: ls.cmdSN}
		ls.statSN++
		return false, ls.write(&resp, nil)
	}
	kvs, err := pdu.ParseText(text)
	if err != nil {
		return false, loginFail(pdu.LoginInitiatorError, "%v", err)
	}
	var answer []pdu.KV
	if ls.first {
		ls.first = false
		if answer, err = ls.firstRequest(kvs); err != nil {
			return false, err
		}
	}
	more, err := ls.negotiate(req, kvs)
	if err != nil {
		return false, err
	}
	answer = append(answer, more...)

	// Stage transition.
	transit := req.Transit
	if transit && ls.stage == pdu.StageSecurity && !ls.authDone {
		transit = false
	}
	if transit && req.NSG == pdu.StageFullFeature && !ls.sentMRDSL {
		answer = append(answer, pdu.KV{Key: "MaxRecvDataSegmentLength",
			Value: strconv.Itoa(ls.params.TargetMaxRecvDataSegmentLength)})
		ls.sentMRDSL = true
	}
	// Offer what the initiator left at a default the target cannot keep.
	if transit && req.NSG == pdu.StageFullFeature && c.srv.opts.DisableImmediateData &&
		!ls.negotiated["ImmediateData"] && !ls.offeredImmed && ls.sessionType != "Discovery" {
		answer = append(answer, pdu.KV{Key: "ImmediateData", Value: "No"})
		ls.offeredImmed = true
		ls.params.ImmediateData = false
		transit = false
	}
	resp := pdu.LoginResponse{Transit: transit, CSG: ls.stage, ISID: ls.isid, TSIH: ls.tsih,
		ITT: ls.itt, StatSN: ls.statSN, ExpCmdSN: ls.cmdSN,
		MaxCmdSN: ls.cmdSN + uint32(c.srv.opts.QueueDepth) - 1}
	if transit {
		resp.NSG = req.NSG
	}
	final := transit && req.NSG == pdu.StageFullFeature
	if final {
		if err := ls.finish(); err != nil {
			return false, err
		}
		resp.TSIH = c.sess.tsih
	}
	buf := pdu.AppendText(nil, answer...)
	if len(buf) > 8192 {
		return false, loginFail(pdu.LoginTargetError, "login response text too long")
	}
	ls.statSN++
	if err := ls.write(&resp, buf); err != nil {
		return false, err
	}
	if transit {
		ls.stage = req.NSG
	}
	return final, nil
}

// firstRequest checks the keys only the first Login Request carries.
func (ls *loginState) firstRequest(kvs []pdu.KV) ([]pdu.KV, error) {
	c := ls.c
	name, ok := pdu.Lookup(kvs, "InitiatorName")
	if !ok {
		return nil, loginFail(pdu.LoginMissingParameter, "InitiatorName missing")
	}
	if !ValidName(name) {
		return nil, loginFail(pdu.LoginInitiatorError, "bad InitiatorName %q", name)
	}
	ls.initiator = name
	ls.sessionType = "Normal"
	if st, ok := pdu.Lookup(kvs, "SessionType"); ok {
		switch st {
		case "Normal", "Discovery":
			ls.sessionType = st
		default:
			return nil, loginFail(pdu.LoginSessionTypeUnsupported, "SessionType %q", st)
		}
	}
	if ls.tsih != 0 {
		// Adding a connection to an existing session: MaxConnections is 1.
		if c.srv.sessionByTSIH(ls.tsih) {
			return nil, loginFail(pdu.LoginTooManyConnections, "session %d already has its connection", ls.tsih)
		}
		return nil, loginFail(pdu.LoginSessionDoesNotExist, "no session with TSIH %d", ls.tsih)
	}
	var answer []pdu.KV
	var chap *CHAPConfig
	if ls.sessionType == "Normal" {
		tn, ok := pdu.Lookup(kvs, "TargetName")
		if !ok {
			return nil, loginFail(pdu.LoginMissingParameter, "TargetName missing")
		}
		t := c.srv.lookupTarget(tn)
		if t == nil || !t.exposes(c.tpgt) {
			return nil, loginFail(pdu.LoginTargetNotFound, "no target %q on portal group %d", tn, c.tpgt)
		}
		ls.target = t
		if !t.allows(name, c.remote.Addr()) {
			return nil, loginFail(pdu.LoginAuthorizationFailure, "initiator %s from %s not allowed", name, c.remote.Addr())
		}
		chap = t.cfg.CHAP
		answer = append(answer, pdu.KV{Key: "TargetPortalGroupTag", Value: strconv.Itoa(int(c.tpgt))})
		if t.cfg.Alias != "" {
			answer = append(answer, pdu.KV{Key: "TargetAlias", Value: t.cfg.Alias})
		}
	} else {
		chap = c.srv.opts.DiscoveryAuth
		if tn, ok := pdu.Lookup(kvs, "TargetName"); ok && tn != "" {
			// Discovery sessions need no TargetName; a given one is ignored.
			_ = tn
		}
		answer = append(answer, pdu.KV{Key: "TargetPortalGroupTag", Value: strconv.Itoa(int(c.tpgt))})
	}
	if chap != nil {
		ls.auth = &chapAuth{cfg: chap}
	}
	if ls.stage != pdu.StageSecurity {
		// Skipping the security stage is only possible without CHAP.
		if ls.auth != nil {
			return nil, loginFail(pdu.LoginAuthFailure, "authentication required")
		}
		ls.authDone = true
	}
	return answer, nil
}

// negotiate answers the keys of one complete request.
func (ls *loginState) negotiate(req *pdu.LoginRequest, kvs []pdu.KV) ([]pdu.KV, error) {
	c := ls.c
	var answer []pdu.KV
	o := &c.srv.opts
	for _, kv := range kvs {
		k, v := kv.Key, kv.Value
		switch k {
		case "InitiatorName", "SessionType", "TargetName", "InitiatorAlias":
			continue
		case "AuthMethod":
			if ls.stage != pdu.StageSecurity {
				return nil, loginFail(pdu.LoginInitiatorError, "AuthMethod outside security stage")
			}
			offers, err := pdu.SplitList(v)
			if err != nil {
				answer = append(answer, pdu.KV{Key: k, Value: pdu.RejectValue})
				continue
			}
			want := "None"
			if ls.auth != nil {
				want = "CHAP"
			}
			chosen := pdu.RejectValue
			for _, of := range offers {
				if of == want {
					chosen = want
					break
				}
			}
			if chosen == pdu.RejectValue {
				return nil, loginFail(pdu.LoginAuthFailure, "AuthMethod %q, target requires %s", v, want)
			}
			ls.authMethod = chosen
			answer = append(answer, pdu.KV{Key: k, Value: chosen})
			if chosen == "None" {
				ls.authDone = true
			}
			continue
		case "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R":
			continue // handled below, together
		case "TargetAlias", "TargetAddress", "TargetPortalGroupTag":
			// Target-declared keys: an initiator must not send them.
			answer = append(answer, pdu.KV{Key: k, Value: pdu.Irrelevant})
			continue
		case "MaxRecvDataSegmentLength":
			def, _ := pdu.LookupKey(k)
			if _, err := pdu.Answer(def, v, ""); err != nil {
				answer = append(answer, pdu.KV{Key: k, Value: pdu.RejectValue})
				continue
			}
			ls.params.Set(k, v)
			if !ls.sentMRDSL {
				answer = append(answer, pdu.KV{Key: k, Value: strconv.Itoa(ls.params.TargetMaxRecvDataSegmentLength)})
				ls.sentMRDSL = true
			}
			continue
		case "OFMarkInt", "IFMarkInt":
			answer = append(answer, pdu.KV{Key: k, Value: pdu.Irrelevant})
			continue
		}
		def, ok := pdu.LookupKey(k)
		if !ok || def.Type == pdu.Special {
			answer = append(answer, pdu.KV{Key: k, Value: pdu.NotUnderstood})
			continue
		}
		if ls.offeredImmed && k == "ImmediateData" {
			res, err := pdu.Accept(def, "No", v)
			if err != nil {
				return nil, loginFail(pdu.LoginInitiatorError, "%v", err)
			}
			ls.params.Set(k, res)
			ls.negotiated[k] = true
			continue
		}
		if ls.sessionType == "Discovery" && !discoveryKey(k) {
			answer = append(answer, pdu.KV{Key: k, Value: pdu.Irrelevant})
			continue
		}
		local := ""
		switch k {
		case "HeaderDigest", "DataDigest":
			local = "None"
			if !o.DisableDigests {
				local = "CRC32C,None"
			}
		case "MaxConnections":
			local = "1"
		case "ErrorRecoveryLevel":
			local = "0"
		case "InitialR2T":
			local = pdu.FormatBool(o.RequireInitialR2T)
		case "ImmediateData":
			local = pdu.FormatBool(!o.DisableImmediateData)
		case "MaxBurstLength":
			local = strconv.Itoa(o.MaxBurstLength)
		case "FirstBurstLength":
			local = strconv.Itoa(o.FirstBurstLength)
		case "MaxOutstandingR2T":
			local = strconv.Itoa(o.MaxOutstandingR2T)
		case "DataPDUInOrder", "DataSequenceInOrder":
			local = "Yes" // the target needs data in order
		case "DefaultTime2Wait":
			local = "0"
		case "DefaultTime2Retain":
			local = "0"
		case "IFMarker", "OFMarker":
			local = "No"
		default:
			local = def.Default
		}
		res, err := pdu.Answer(def, v, local)
		if err != nil {
			c.log.Debug("login key rejected", "key", k, "value", v, "err", err)
		} else if err := ls.params.Set(k, res); err != nil {
			res = pdu.RejectValue
		}
		ls.negotiated[k] = true
		answer = append(answer, pdu.KV{Key: k, Value: res})
	}
	if ls.params.FirstBurstLength > ls.params.MaxBurstLength {
		ls.params.FirstBurstLength = ls.params.MaxBurstLength
	}
	// CHAP runs once AuthMethod=CHAP is agreed.
	if ls.stage == pdu.StageSecurity && ls.authMethod == "CHAP" && !ls.authDone {
		ans, done, err := ls.auth.handle(kvs)
		if err != nil {
			return nil, err
		}
		answer = append(answer, ans...)
		ls.authDone = done
	} else if ls.authMethod != "CHAP" {
		for _, kv := range kvs {
			if strings.HasPrefix(kv.Key, "CHAP_") {
				return nil, loginFail(pdu.LoginInitiatorError, "%s without AuthMethod=CHAP", kv.Key)
			}
		}
	}
	_ = req
	return answer, nil
}

// discoveryKey reports whether a key matters to discovery sessions.
func discoveryKey(k string) bool {
	switch k {
	case "HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength", "DefaultTime2Wait",
		"DefaultTime2Retain", "ErrorRecoveryLevel", "IFMarker", "OFMarker":
		return true
	}
	return false
}

// finish completes a login: session registration (with reinstatement) and
// the connection's switch to full feature phase.
func (ls *loginState) finish() error {
	c := ls.c
	if ls.target != nil && c.srv.lookupTarget(ls.target.cfg.Name) != ls.target {
		return loginFail(pdu.LoginTargetRemoved, "target removed during login")
	}
	sess := &session{
		id: c.srv.nextID.Add(1), isid: ls.isid, initiatorName: ls.initiator,
		discovery: ls.sessionType == "Discovery", start: time.Now(),
	}
	c.sess = sess
	c.params = ls.params
	c.cid = ls.cid
	if ls.target != nil {
		c.target.Store(ls.target)
		sess.nexus = &scsi.Nexus{
			ID: sess.id, InitiatorName: ls.initiator, ISID: ls.isid,
			Port: scsi.TargetPort{
				Name:       fmt.Sprintf("%s,t,0x%04x", ls.target.cfg.Name, c.tpgt),
				RelativeID: c.tpgt, GroupID: c.tpgt,
			},
			RemoteAddr: c.nc.RemoteAddr().String(),
		}
	}
	if _, err := c.srv.registerSession(c); err != nil {
		c.target.Store(nil)
		if errors.Is(err, errTooManySessions) {
			return loginFail(pdu.LoginOutOfResources, "too many sessions")
		}
		if errors.Is(err, errTargetReplaced) {
			return loginFail(pdu.LoginTargetRemoved, "target removed during login")
		}
		return loginFail(pdu.LoginServiceUnavailable, "%v", err)
	}
	if ls.target != nil {
		ls.target.logins.ok.Add(1)
	}
	c.srv.limiter.success(c.remote.Addr())
	c.expCmdSN.Store(ls.cmdSN)
	c.maxCmdSN.Store(ls.cmdSN + uint32(c.srv.opts.QueueDepth) - 1)
	c.statSN = ls.statSN + 1
	c.lastRecv.Store(time.Now().UnixNano())
	c.rd.Limits = pdu.Limits{
		MaxDataSegmentLength: ls.params.TargetMaxRecvDataSegmentLength,
		MaxAHSLength:         maxAHS,
		HeaderDigest:         ls.params.HeaderDigest,
		DataDigest:           ls.params.DataDigest,
	}
	c.log.Info("login", "session", sess.id, "initiator", ls.initiator, "target", ls.targetName(),
		"type", ls.sessionType, "tsih", sess.tsih, "isid", fmt.Sprintf("%x", ls.isid[:]),
		"header_digest", ls.params.HeaderDigest, "data_digest", ls.params.DataDigest)
	return nil
}
