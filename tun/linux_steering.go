//go:build linux

package tun

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Why a steering program: without one, a multi-queue TUN picks the queue for
// a packet it hands to userspace with "automq": it remembers, per flow, the
// queue userspace last WROTE that flow's packets on and otherwise hashes.
// So the first reply we write for a flow can move the flow's reads to
// another queue while packets are still waiting on the old one, and two
// reader goroutines then deliver the flow out of order (measured: the
// echo subtest of TestLinuxMultiQueueOrder reorders within a few runs).
// With a steering eBPF program (TUNSETSTEERINGEBPF) the kernel asks the
// program for the queue instead and stops learning from writes: the queue
// becomes a pure function of the packet's flow, and no flow ever moves.

// bpfInsn is struct bpf_insn.
type bpfInsn struct {
	code   uint8
	regs   uint8 // dst in the low nibble, src in the high nibble
	off    int16
	imm    int32
	label  string // jump target (resolved by assemble), or ""
	define string // label defined at this instruction, or ""
}

// eBPF opcodes used below (linux/bpf_common.h, linux/bpf.h).
const (
	opLdAbsB  = 0x30 // r0 = *(u8 *)(skb->data + imm)
	opLdAbsH  = 0x28
	opLdAbsW  = 0x20
	opLdIndW  = 0x40 // r0 = *(u32 *)(skb->data + src + imm)
	opMov64X  = 0xbf
	opMov64K  = 0xb7
	opRsh64K  = 0x77
	opLsh64K  = 0x67
	opAnd64K  = 0x57
	opXor64X  = 0xaf
	opMov32X  = 0xbc
	opRsh32K  = 0x74
	opXor32X  = 0xac
	opMul32K  = 0x24
	opJeqK    = 0x15
	opJneK    = 0x55
	opJa      = 0x05
	opExit    = 0x95
	regCtx    = 6 // LD_ABS/LD_IND take the skb from r6
	regTmp    = 7
	regAcc    = 8
	regResult = 0
)

func ins(code uint8, dst, src uint8, imm int32) bpfInsn {
	return bpfInsn{code: code, regs: dst | src<<4, imm: imm}
}

func jmp(code uint8, dst uint8, imm int32, label string) bpfInsn {
	return bpfInsn{code: code, regs: dst, imm: imm, label: label}
}

func at(label string, i bpfInsn) bpfInsn { i.define = label; return i }

// steeringProgram returns a socket-filter program that returns a hash of
// the packet's flow: IPv4/IPv6 addresses, protocol and, for unfragmented
// TCP/UDP, the ports (the same flow definition as FlowHash). Out-of-bounds
// loads make the kernel end the program with 0 (queue 0), so malformed
// packets are safe.
func steeringProgram() []bpfInsn {
	xorW := func(off int32) []bpfInsn {
		return []bpfInsn{ins(opLdAbsW, 0, 0, off), ins(opXor64X, regAcc, regResult, 0)}
	}
	p := []bpfInsn{
		ins(opMov64X, regCtx, 1, 0),
		ins(opLdAbsB, 0, 0, 0),
		ins(opMov64X, regTmp, regResult, 0),
		ins(opRsh64K, regTmp, 0, 4),
		jmp(opJeqK, regTmp, 4, "v4"),
		jmp(opJeqK, regTmp, 6, "v6"),
		ins(opMov64K, regResult, 0, 0),
		ins(opExit, 0, 0, 0),
		// IPv4
		at("v4", ins(opMov64K, regAcc, 0, 0)),
	}
	p = append(p, xorW(12)...)
	p = append(p, xorW(16)...)
	p = append(p,
		ins(opLdAbsB, 0, 0, 9),
		ins(opMov64X, regTmp, regResult, 0),
		ins(opXor64X, regAcc, regResult, 0),
		jmp(opJeqK, regTmp, 6, "ports4"),
		jmp(opJneK, regTmp, 17, "done"),
		at("ports4", ins(opLdAbsH, 0, 0, 6)),
		ins(opAnd64K, regResult, 0, 0x3fff), // fragment offset or MF: no ports
		jmp(opJneK, regResult, 0, "done"),
		ins(opLdAbsB, 0, 0, 0),
		ins(opAnd64K, regResult, 0, 0x0f),
		ins(opLsh64K, regResult, 0, 2),
		ins(opMov64X, regTmp, regResult, 0),
		ins(opLdIndW, 0, regTmp, 0), // both ports
		ins(opXor64X, regAcc, regResult, 0),
		jmp(opJa, 0, 0, "done"),
		// IPv6 (no extension headers: as in FlowHash, anything else
		// hashes by addresses and next header only)
		at("v6", ins(opMov64K, regAcc, 0, 0)),
	)
	for off := int32(8); off < 40; off += 4 {
		p = append(p, xorW(off)...)
	}
	p = append(p,
		ins(opLdAbsB, 0, 0, 6),
		ins(opMov64X, regTmp, regResult, 0),
		ins(opXor64X, regAcc, regResult, 0),
		jmp(opJeqK, regTmp, 6, "ports6"),
		jmp(opJneK, regTmp, 17, "done"),
		at("ports6", ins(opLdAbsW, 0, 0, 40)),
		ins(opXor64X, regAcc, regResult, 0),
		// Mix so that every input bit reaches the low bits the kernel
		// uses (it takes the result modulo the number of queues).
		at("done", ins(opMov32X, regResult, regAcc, 0)),
		ins(opMov32X, regTmp, regResult, 0),
		ins(opRsh32K, regTmp, 0, 16),
		ins(opXor32X, regResult, regTmp, 0),
		ins(opMul32K, regResult, 0, -1640531535), // 0x9e3779b1
		ins(opMov32X, regTmp, regResult, 0),
		ins(opRsh32K, regTmp, 0, 15),
		ins(opXor32X, regResult, regTmp, 0),
		ins(opExit, 0, 0, 0),
	)
	return p
}

// assemble resolves labels into jump offsets and encodes struct bpf_insn.
func assemble(p []bpfInsn) ([]uint64, error) {
	labels := map[string]int{}
	for i, in := range p {
		if in.define != "" {
			labels[in.define] = i
		}
	}
	out := make([]uint64, len(p))
	for i, in := range p {
		if in.label != "" {
			target, ok := labels[in.label]
			if !ok || target <= i {
				return nil, fmt.Errorf("bpf: bad label %q", in.label)
			}
			in.off = int16(target - i - 1)
		}
		out[i] = uint64(in.code) | uint64(in.regs)<<8 | uint64(uint16(in.off))<<16 | uint64(uint32(in.imm))<<32
	}
	return out, nil
}

// bpfProgLoadAttr is the BPF_PROG_LOAD part of union bpf_attr.
type bpfProgLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	progFlags   uint32
	progName    [16]byte
}

// loadSteeringProgram loads the program and returns its fd.
func loadSteeringProgram() (int, error) {
	insns, err := assemble(steeringProgram())
	if err != nil {
		return -1, err
	}
	license := []byte("Dual MIT/GPL\x00")
	logBuf := make([]byte, 16<<10)
	attr := bpfProgLoadAttr{
		progType: unix.BPF_PROG_TYPE_SOCKET_FILTER,
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
		logLevel: 1,
		logSize:  uint32(len(logBuf)),
		logBuf:   uint64(uintptr(unsafe.Pointer(&logBuf[0]))),
	}
	copy(attr.progName[:], "gozone_tunsteer")
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	runtime.KeepAlive(logBuf)
	if errno != 0 {
		return -1, fmt.Errorf("bpf: load steering program: %w: %s", errno, unix.ByteSliceToString(logBuf))
	}
	return int(fd), nil
}

// attachSteering installs the steering program on the device behind fd
// (any of its queues). The kernel keeps its own reference to the program.
func attachSteering(fd int) error {
	prog, err := loadSteeringProgram()
	if err != nil {
		return err
	}
	defer unix.Close(prog)
	p := int32(prog)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETSTEERINGEBPF, uintptr(unsafe.Pointer(&p))); errno != 0 {
		return fmt.Errorf("tun: TUNSETSTEERINGEBPF: %w", errno)
	}
	return nil
}
