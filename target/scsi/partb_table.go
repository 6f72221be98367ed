package scsi

func vaaiEntries() []opInfo {
	const ctl = 0x00
	return []opInfo{
		{name: "EXTENDED COPY", op: 0x83, sa: 0x00, hasSA: true, dir: dirOut, handle: (*request).extendedCopy, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), pr: prWrite, supported: hasRegistry, timeout: 300},
		{name: "RECEIVE COPY RESULTS", op: 0x84, sa: 0x00, hasSA: true, dir: dirIn, handle: (*request).receiveCopyResults, usage: u(0xff, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), supported: hasRegistry, timeout: 5},
		{name: "RECEIVE COPY RESULTS", op: 0x84, sa: 0x03, hasSA: true, dir: dirIn, handle: (*request).receiveCopyResults, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), supported: hasRegistry, timeout: 5},
		{name: "COMPARE AND WRITE", op: 0x89, dir: dirOut, handle: (*request).compareAndWrite, usage: u(0xff, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x3f, ctl), pr: prWrite, timeout: 30},
	}
}

func aluaEntries() []opInfo {
	const ctl = 0x00
	return []opInfo{
		{name: "REPORT TARGET PORT GROUPS", op: 0xa3, sa: 0x0a, hasSA: true, dir: dirIn, handle: (*request).reportTargetPortGroups, supported: hasALUA, usage: u(0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), alua: aluaAny, timeout: 1},
		{name: "SET TARGET PORT GROUPS", op: 0xa4, sa: 0x0a, hasSA: true, dir: dirOut, handle: (*request).setTargetPortGroups, supported: hasExplicitALUA, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), pr: prWrite, alua: aluaAny, timeout: 10},
	}
}

// hasRegistry: EXTENDED COPY needs the LU attached to a Target (whose
// Registry resolves copy targets).
func hasRegistry(lu *LU) bool { return lu.target() != nil }

func hasALUA(lu *LU) bool {
	t := lu.target()
	return t != nil && t.alua != nil
}

func hasExplicitALUA(lu *LU) bool {
	t := lu.target()
	return t != nil && t.alua != nil && t.alua.explicit
}
