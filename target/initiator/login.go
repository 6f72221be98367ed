package initiator

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/lunway/lunway/target/pdu"
)

// loginConn is the synchronous exchange of Login PDUs before the reader
// goroutine starts.
type loginConn struct {
	s       *Session
	rd      *pdu.Reader
	itt     uint32
	cmdSN   uint32
	expStat uint32
	tsih    uint16
}

func (l *loginConn) exchange(csg, nsg uint8, transit bool, kvs []pdu.KV) (*pdu.LoginResponse, []pdu.KV, error) {
	s := l.s
	req := pdu.LoginRequest{Transit: transit, CSG: csg, NSG: nsg, ISID: s.isid, TSIH: l.tsih,
		ITT: l.itt, CID: 0, CmdSN: l.cmdSN, ExpStatSN: l.expStat}
	if !transit {
		req.NSG = 0
	}
	var b pdu.BHS
	req.Encode(&b)
	text := pdu.AppendText(nil, kvs...)
	if _, err := s.nc.Write(pdu.AppendPDU(nil, &b, nil, text, false, false)); err != nil {
		return nil, nil, err
	}
	var all []byte
	for {
		p, err := l.rd.ReadPDU()
		if err != nil {
			return nil, nil, err
		}
		var resp pdu.LoginResponse
		if err := resp.Decode(&p.BHS); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		l.expStat = resp.StatSN + 1
		if resp.Status != pdu.LoginSuccess {
			return &resp, nil, &LoginError{Status: resp.Status}
		}
		all = append(all, p.Data...)
		if resp.Continue {
			// The target continues its text: ask for the rest.
			var b pdu.BHS
			(&pdu.LoginRequest{CSG: csg, ISID: s.isid, TSIH: l.tsih, ITT: l.itt, CmdSN: l.cmdSN,
				ExpStatSN: l.expStat}).Encode(&b)
			if _, err := s.nc.Write(pdu.AppendPDU(nil, &b, nil, nil, false, false)); err != nil {
				return nil, nil, err
			}
			continue
		}
		ans, err := pdu.ParseText(all)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: login text: %v", ErrProtocol, err)
		}
		l.tsih = resp.TSIH
		return &resp, ans, nil
	}
}

// login runs the login phase.
func (s *Session) login() error {
	o := &s.opts
	l := &loginConn{s: s, rd: pdu.NewReader(s.br, pdu.Limits{MaxDataSegmentLength: 1 << 16}), itt: s.nextITT()}
	l.cmdSN = s.cmdSN
	discovery := o.TargetName == ""
	first := []pdu.KV{{Key: "InitiatorName", Value: o.InitiatorName}}
	if o.InitiatorAlias != "" {
		first = append(first, pdu.KV{Key: "InitiatorAlias", Value: o.InitiatorAlias})
	}
	if discovery {
		first = append(first, pdu.KV{Key: "SessionType", Value: "Discovery"})
	} else {
		first = append(first, pdu.KV{Key: "SessionType", Value: "Normal"},
			pdu.KV{Key: "TargetName", Value: o.TargetName})
	}
	record := func(ans []pdu.KV) {
		for _, kv := range ans {
			s.answers = append(s.answers, kv)
			switch kv.Key {
			case "TargetPortalGroupTag", "TargetAlias":
				s.takeAnswer(kv, nil)
			}
		}
	}
	// Security stage.
	auth := "None"
	if o.CHAP != nil {
		auth = "CHAP,None"
	}
	resp, ans, err := l.exchange(pdu.StageSecurity, pdu.StageOperational, o.CHAP == nil,
		append(first, pdu.KV{Key: "AuthMethod", Value: auth}))
	if err != nil {
		return err
	}
	record(ans)
	am, _ := pdu.Lookup(ans, "AuthMethod")
	if am == "CHAP" {
		if o.CHAP == nil {
			return fmt.Errorf("%w: target requires CHAP", ErrNegotiation)
		}
		if resp, ans, err = s.chap(l); err != nil {
			return err
		}
		record(ans)
	} else if o.CHAP != nil && o.CHAP.TargetSecret != "" {
		return fmt.Errorf("%w: mutual CHAP requested, target answered AuthMethod=%s", ErrAuth, am)
	}
	for !resp.Transit {
		// The target is not ready to leave the security stage.
		if resp, ans, err = l.exchange(pdu.StageSecurity, pdu.StageOperational, true, nil); err != nil {
			return err
		}
		record(ans)
	}
	// Operational stage.
	offers := s.offers(discovery)
	offered := map[string]string{}
	for _, kv := range offers {
		offered[kv.Key] = kv.Value
	}
	kvs := append(offers, o.Extra...)
	for {
		resp, ans, err = l.exchange(pdu.StageOperational, pdu.StageFullFeature, true, kvs)
		if err != nil {
			return err
		}
		record(ans)
		kvs = nil
		for _, kv := range ans {
			reply, err := s.takeAnswer(kv, offered)
			if err != nil {
				return err
			}
			if reply != nil {
				kvs = append(kvs, *reply)
			}
		}
		if resp.Transit && resp.NSG == pdu.StageFullFeature && len(kvs) == 0 {
			break
		}
	}
	if s.params.FirstBurstLength > s.params.MaxBurstLength {
		s.params.FirstBurstLength = s.params.MaxBurstLength
	}
	s.tsih = resp.TSIH
	s.expStatSN = l.expStat
	s.expCmdSN = resp.ExpCmdSN
	s.maxCmdSN = resp.MaxCmdSN
	return nil
}

// offers returns the operational keys to offer.
func (s *Session) offers(discovery bool) []pdu.KV {
	o := &s.opts
	dig := func(on bool) string {
		if on {
			return "CRC32C"
		}
		return "None"
	}
	kvs := []pdu.KV{
		{Key: "HeaderDigest", Value: dig(o.HeaderDigest)},
		{Key: "DataDigest", Value: dig(o.DataDigest)},
		{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(o.MaxRecvDataSegmentLength)},
		{Key: "DefaultTime2Wait", Value: "0"},
		{Key: "DefaultTime2Retain", Value: "0"},
		{Key: "ErrorRecoveryLevel", Value: "0"},
	}
	s.params.MaxRecvDataSegmentLength = o.MaxRecvDataSegmentLength
	if !discovery {
		kvs = append(kvs,
			pdu.KV{Key: "MaxConnections", Value: "1"},
			pdu.KV{Key: "InitialR2T", Value: pdu.FormatBool(o.InitialR2T)},
			pdu.KV{Key: "ImmediateData", Value: pdu.FormatBool(!o.NoImmediateData)},
			pdu.KV{Key: "MaxBurstLength", Value: strconv.Itoa(o.MaxBurstLength)},
			pdu.KV{Key: "FirstBurstLength", Value: strconv.Itoa(o.FirstBurstLength)},
			pdu.KV{Key: "MaxOutstandingR2T", Value: strconv.Itoa(o.MaxOutstandingR2T)},
			pdu.KV{Key: "DataPDUInOrder", Value: "Yes"},
			pdu.KV{Key: "DataSequenceInOrder", Value: "Yes"},
			pdu.KV{Key: "IFMarker", Value: "No"},
			pdu.KV{Key: "OFMarker", Value: "No"},
		)
	}
	// Extra keys replace the standard offers of the same name.
	out := kvs[:0]
	for _, kv := range kvs {
		if _, ok := pdu.Lookup(o.Extra, kv.Key); !ok {
			out = append(out, kv)
		}
	}
	return out
}

// takeAnswer applies one key of a login response. It returns a reply when
// the target offered a key itself.
func (s *Session) takeAnswer(kv pdu.KV, offered map[string]string) (*pdu.KV, error) {
	switch kv.Key {
	case "TargetPortalGroupTag":
		n, err := pdu.ParseNumberRange(kv.Value, 1, 65535)
		if err != nil {
			return nil, fmt.Errorf("%w: TargetPortalGroupTag: %v", ErrProtocol, err)
		}
		s.tpgt = uint16(n)
		return nil, nil
	case "TargetAlias":
		s.targetAlias = kv.Value
		return nil, nil
	case "MaxRecvDataSegmentLength":
		n, err := pdu.ParseNumberRange(kv.Value, 512, 1<<24-1)
		if err != nil {
			return nil, fmt.Errorf("%w: target MaxRecvDataSegmentLength: %v", ErrProtocol, err)
		}
		s.params.TargetMaxRecvDataSegmentLength = int(n)
		return nil, nil
	case "TargetAddress", "AuthMethod":
		return nil, nil
	}
	def, known := pdu.LookupKey(kv.Key)
	off, wasOffered := offered[kv.Key]
	if !wasOffered {
		for _, e := range s.opts.Extra {
			if e.Key == kv.Key {
				return nil, nil // answer recorded in LoginAnswers
			}
		}
		if !known || def.Type == pdu.Declarative || def.Type == pdu.Special {
			return &pdu.KV{Key: kv.Key, Value: pdu.NotUnderstood}, nil
		}
		// The target offers a key: answer it with our default preference.
		local := def.Default
		switch kv.Key {
		case "ImmediateData":
			local = pdu.FormatBool(!s.opts.NoImmediateData)
		case "InitialR2T":
			local = pdu.FormatBool(s.opts.InitialR2T)
		}
		res, err := pdu.Answer(def, kv.Value, local)
		if err == nil {
			s.params.Set(kv.Key, res)
		}
		return &pdu.KV{Key: kv.Key, Value: res}, nil
	}
	delete(offered, kv.Key)
	res, err := pdu.Accept(def, off, kv.Value)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNegotiation, err)
	}
	if err := s.params.Set(kv.Key, res); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNegotiation, err)
	}
	return nil, nil
}

// chap runs the CHAP exchange after the target chose AuthMethod=CHAP.
func (s *Session) chap(l *loginConn) (*pdu.LoginResponse, []pdu.KV, error) {
	c := s.opts.CHAP
	algs := c.Algorithms
	if len(algs) == 0 {
		algs = []int{pdu.CHAPSHA256, pdu.CHAPMD5}
	}
	var list []string
	for _, a := range algs {
		list = append(list, strconv.Itoa(a))
	}
	_, ans, err := l.exchange(pdu.StageSecurity, pdu.StageOperational, false,
		[]pdu.KV{{Key: "CHAP_A", Value: strings.Join(list, ",")}})
	if err != nil {
		return nil, nil, err
	}
	av, _ := pdu.Lookup(ans, "CHAP_A")
	alg, err := strconv.Atoi(av)
	if err != nil || !slices.Contains(algs, alg) {
		return nil, nil, fmt.Errorf("%w: target chose CHAP_A=%q", ErrNegotiation, av)
	}
	iv, _ := pdu.Lookup(ans, "CHAP_I")
	id, err := pdu.ParseCHAPIdentifier(iv)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: CHAP_I: %v", ErrProtocol, err)
	}
	cv, _ := pdu.Lookup(ans, "CHAP_C")
	challenge, err := pdu.ParseBinary(cv)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: CHAP_C: %v", ErrProtocol, err)
	}
	r, err := pdu.CHAPResponse(alg, id, []byte(c.Secret), challenge)
	if err != nil {
		return nil, nil, err
	}
	kvs := []pdu.KV{{Key: "CHAP_N", Value: c.User}, {Key: "CHAP_R", Value: pdu.FormatHex(r)}}
	var myID byte
	var myChallenge []byte
	mutual := c.TargetSecret != ""
	if mutual {
		buf := make([]byte, 1+pdu.CHAPDigestLen(alg))
		if _, err := rand.Read(buf); err != nil {
			return nil, nil, err
		}
		myID, myChallenge = buf[0], buf[1:]
		kvs = append(kvs, pdu.KV{Key: "CHAP_I", Value: strconv.Itoa(int(myID))},
			pdu.KV{Key: "CHAP_C", Value: pdu.FormatHex(myChallenge)})
	}
	resp, ans, err := l.exchange(pdu.StageSecurity, pdu.StageOperational, true, kvs)
	if err != nil {
		return nil, nil, err
	}
	if mutual {
		n, _ := pdu.Lookup(ans, "CHAP_N")
		rv, ok := pdu.Lookup(ans, "CHAP_R")
		if !ok {
			return nil, nil, fmt.Errorf("%w: no CHAP_R from target", ErrAuth)
		}
		got, err := pdu.ParseBinary(rv)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: malformed CHAP_R", ErrAuth)
		}
		want, _ := pdu.CHAPResponse(alg, myID, []byte(c.TargetSecret), myChallenge)
		if subtle.ConstantTimeCompare(got, want)&subtle.ConstantTimeCompare([]byte(n), []byte(c.TargetUser)) != 1 {
			return nil, nil, fmt.Errorf("%w: wrong CHAP_N or CHAP_R", ErrAuth)
		}
	}
	return resp, ans, nil
}

var errLoginDone = errors.New("login done")
