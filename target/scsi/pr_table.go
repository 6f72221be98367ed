package scsi

func reservationEntries() []opInfo {
	const ctl = 0x00
	return []opInfo{
		{name: "RESERVE (6)", op: 0x16, handle: (*request).reserve, usage: u(0xff, 0, 0, 0, 0, ctl), pr: prSCSI2, timeout: 5},
		{name: "RELEASE (6)", op: 0x17, handle: (*request).release, usage: u(0xff, 0, 0, 0, 0, ctl), pr: prSCSI2, timeout: 5},
		{name: "RESERVE (10)", op: 0x56, handle: (*request).reserve, usage: u(0xff, 0, 0, 0, 0, 0, 0, 0, 0, ctl), pr: prSCSI2, timeout: 5},
		{name: "RELEASE (10)", op: 0x57, handle: (*request).release, usage: u(0xff, 0, 0, 0, 0, 0, 0, 0, 0, ctl), pr: prSCSI2, timeout: 5},
		{name: "PERSISTENT RESERVE IN", op: 0x5e, sa: 0x00, hasSA: true, dir: dirIn, handle: (*request).persistentReserveIn, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE IN", op: 0x5e, sa: 0x01, hasSA: true, dir: dirIn, handle: (*request).persistentReserveIn, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE IN", op: 0x5e, sa: 0x02, hasSA: true, dir: dirIn, handle: (*request).persistentReserveIn, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE IN", op: 0x5e, sa: 0x03, hasSA: true, dir: dirIn, handle: (*request).persistentReserveIn, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x00, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x01, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x02, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x03, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x04, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x05, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x06, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x07, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
	}
}
