// The real CircuitPython on an emulated RP2040 (rp2040js 1.4.1), for tests/support/board_emu.py.
//
//   node run.mjs --uf2=IMG --bootrom=BIN --drive=FAT.img --drive-out=DUMP.img
//                --spi=0 --cs=17 --inputs=1:1,15:1 --fds=IN,OUT [--timeout=600]
//
// Channels (tests/support/board_emu.py is the other end; docs/architecture.md, "The board emulator"):
// - fds OUT -> IN (pipes from the parent): the W5500 on SPI `--spi`, chip select GPIO `--cs`. Every request starts with
//   an opcode and the simulated time (float64 ns, little-endian); counts are uint16 BE.
//     'W' t len frame   a whole write frame, sent when CS rises; no answer
//     'R' t hdr(3) n    a read frame's header; answer: its first n MISO bytes
//     'C' t n           the same read frame goes on; answer: n more bytes
//   The emulated CPU waits for the answer (synchronous pipe I/O), so no simulated time passes.
// - stdout: JSON lines {"c": console text, "t": ns} | {"t": ns} (every 200 ms of wall time)
//   | {"ev": "han", "id": N, "t": ns} (a HAN burst's last edge) | {"ev": "exit", "why": ...}
//   | {"ev": "reset", "t": ns} (the watchdog reset the chip: it starts again, flash kept).
// - stdin: JSON lines {"cmd": "han", "id", "frames": [hex], "format": "8E1"|"8N1",
//   "invert", "baud", "gap_ms", "delay_ms"} | {"cmd": "type", "text"} | {"cmd": "reset"}
//   (the reset button) | {"cmd": "quit"}.
// - `--inputs=GPIO:LEVEL,...`: levels driven from power-up (pulls are not modelled): the HAN
//   line idle, the FACTRESET button released. The HAN line is the first one.
import fs from 'fs';
import { Simulator, USBCDC, GPIOPinState } from 'rp2040js';

const opt = Object.fromEntries(process.argv.slice(2).map((a) => {
  const [k, ...v] = a.replace(/^--/, '').split('=');
  return [k, v.join('=')];
}));
const FS_OFFSET = 0x100000; // CIRCUITPY: the last MiB of the 2 MiB CircuitPython assumes
const FS_SIZE = 0x100000;
const SYS_HZ = 125e6; // CircuitPython sets PIO dividers for this system clock
const SPI_BYTE_NS = 1000;

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
// SPI bytes, PIO clocks stepped, chip resets, simulated ns the core slept (WFI)
const stats = { spi: 0, pio: 0, resets: 0, sleep_ns: 0 };
let sim, mcu, cdc, hanAlarm;
let base = 0; // simulated ns of the chips before the last reset
const now = () => base + mcu.clock.nanos;

function exit(why, code = 0) {
  sim.stop();
  if (opt['drive-out']) fs.writeFileSync(opt['drive-out'], mcu.flash.subarray(FS_OFFSET, FS_OFFSET + FS_SIZE));
  out({ ev: 'exit', why, t: now() });
  process.exit(code);
}

// ---- Flash: bootrom, UF2 blocks, the drive image (kept across a reset, as on the chip).
const rom = fs.readFileSync(opt.bootrom);
const image = new Uint8Array(2 * 0x100000);
image.fill(0xff);
const uf2 = fs.readFileSync(opt.uf2);
for (let off = 0; off + 512 <= uf2.length; off += 512) {
  const b = new DataView(uf2.buffer, uf2.byteOffset + off, 512);
  if (b.getUint32(0, true) !== 0x0a324655 || b.getUint32(4, true) !== 0x9e5d5157) continue;
  const addr = b.getUint32(12, true), size = b.getUint32(16, true);
  image.set(uf2.subarray(off + 32, off + 32 + size), addr - 0x10000000);
}
image.set(fs.readFileSync(opt.drive), FS_OFFSET);

const inputs = (opt.inputs || '').split(',').filter(Boolean).map((s) => s.split(':').map(Number));
const levels = new Map(inputs.map(([gpio, level]) => [gpio, !!level])); // driven now
const hanPin = inputs.length ? inputs[0][0] : 1;
const [RESP, REQ] = opt.fds.split(',').map(Number);

// A chip reset (the watchdog: microcontroller.reset() and a starved watchdog both end here;
// rp2040js has no reset of its own): a new RP2040 with the same flash and the same input
// levels, simulated time going on. The W5500 is not reset by it, as on the board.
function reset() {
  const flash = mcu.flash.slice(0, image.length);
  base = now();
  sim.stop();
  stats.resets++;
  out({ ev: 'reset', t: base });
  setTimeout(() => power(flash), 0); // off the stack of the write that triggered it
}

function power(flash) {
  sim = new Simulator();
  continueAtOnce(sim);
  mcu = sim.rp2040;
  // rp2040js logs unimplemented registers CircuitPython touches; only errors, to stderr.
  mcu.logger = { debug() {}, info() {}, warn() {}, error: (c, m) => process.stderr.write(`${c}: ${m}\n`) };
  mcu.loadBootrom(new Uint32Array(rom.buffer, rom.byteOffset, rom.length / 4));
  peripheralsByPage();
  mcu.flash.set(flash);
  mcu.peripherals[0x40058].onWatchdogTrigger = reset;
  patchFlashWrites();
  // Pins. BOOTSEL is read through the QSPI SS pad, whose input enable rp2040js leaves off.
  mcu.qspi[1].padValue |= 0x40;
  mcu.qspi[1].setInputValue(true);
  for (const [gpio, level] of levels) mcu.gpio[gpio].setInputValue(level);
  pioInSimulatedTime();
  bridgeW5500();
  hanAlarm = mcu.clock.createAlarm(hanEdge);
  if (hanEdges.length) hanAlarm.schedule(Math.max(0, hanEdges[0][0] - now()));
  cdc = new USBCDC(mcu.usbCtrl);
  cdc.onSerialData = (buf) => out({ c: Buffer.from(buf).toString('latin1'), t: now() });
  hostNaks();
  mcu.core.PC = 0x10000000;
  sim.execute();
}

// rp2040js's Simulator.execute runs a slice of 1M cycles, then the next one after
// setTimeout(0), which Node holds back at least 1 ms of wall time. While the core sleeps
// (WFI) a slice is only about 8 ms simulated (the clock jumps from alarm to alarm, the PIO's
// every 52 us), so that pause alone held a sleeping board near 8x real time. The same loop,
// the next slice after setImmediate: stdin, the timers and the pipes are still served
// between slices; what the chip does in a slice is unchanged.
function continueAtOnce(s) {
  const cycleNanos = 1e9 / SYS_HZ;
  s.execute = () => {
    const { rp2040, clock } = s;
    s.executeTimer = null;
    s.stopped = false;
    for (let i = 0; i < 1000000 && !s.stopped; i++) {
      if (rp2040.core.waiting) {
        const { nanosToNextAlarm } = clock;
        clock.tick(nanosToNextAlarm);
        stats.sleep_ns += nanosToNextAlarm;
        i += nanosToNextAlarm / cycleNanos;
      } else {
        clock.tick(rp2040.core.executeInstruction() * cycleNanos);
      }
    }
    if (!s.stopped) s.executeTimer = setImmediate(s.execute);
  };
  s.stop = () => {
    s.stopped = true;
    if (s.executeTimer != null) clearImmediate(s.executeTimer);
    s.executeTimer = null;
  };
}

// rp2040js finds the peripheral of an address in an object keyed by its base address
// (findPeripheral: peripherals[(address >>> 14) << 2]), a dictionary lookup on every access
// the CPU makes to a register (the timer it polls, the SPI, the PIO): 3-9% of the runner's
// time. The same mapping in an array indexed by address >>> 14; the same peripheral objects.
function peripheralsByPage() {
  const byPage = new Array(1 << 18).fill(undefined);
  for (const key of Object.keys(mcu.peripherals)) byPage[Number(key) >> 2] = mcu.peripherals[key];
  mcu.findPeripheral = (address) => byPage[address >>> 14];
}

// rp2040js does not erase or program flash: the bootrom's flash_range_erase ('RE') and
// flash_range_program ('RP') become "bkpt; bx lr", and the breakpoint does the work here.
function patchFlashWrites() {
  const view = new DataView(mcu.bootrom.buffer);
  const lookup = (a, b) => {
    const code = a.charCodeAt(0) | (b.charCodeAt(0) << 8);
    for (let p = view.getUint16(0x14, true); view.getUint16(p, true); p += 4) {
      if (view.getUint16(p, true) === code) return view.getUint16(p + 2, true) & ~1;
    }
    throw new Error(`bootrom function ${a}${b} not found`);
  };
  for (const [name, bkpt] of [['RE', 1], ['RP', 2]]) {
    const at = lookup(name[0], name[1]);
    view.setUint16(at, 0xbe00 | bkpt, true); // bkpt #n
    view.setUint16(at + 2, 0x4770, true); // bx lr
  }
  mcu.onBreak = (n) => {
    const [r0, r1, r2] = mcu.core.registers;
    if (n === 1) mcu.flash.fill(0xff, r0, r0 + r1);
    else if (n === 2) for (let i = 0; i < r2; i++) mcu.flash[r0 + i] &= mcu.readUint8(r1 + i);
    else { // a trap (udf #255 is GCC's __builtin_trap): where, and who called
      const r = Array.from(mcu.core.registers, (v) => (v >>> 0).toString(16));
      const sp = mcu.core.SP;
      const stack = Array.from({ length: 16 }, (_, i) => (mcu.readUint32(sp + 4 * i) >>> 0).toString(16));
      exit(`breakpoint ${n} at 0x${mcu.core.PC.toString(16)} (registers ${r.join(' ')}; stack ${stack.join(' ')})`, 3);
    }
  };
}

// ---- PIO in simulated time: one clock alarm per state machine, every divider / 125 MHz.
// Stock rp2040js steps the PIO from setTimeout in wall time, ignoring dividers and delays.
function pioInSimulatedTime() {
  for (const pio of mcu.pio) {
    pio.run = () => {};
    for (const sm of pio.machines) {
      const checkWait = sm.checkWait.bind(sm);
      // A wait is judged on the state machine's clock edge, not when a GPIO input changes.
      sm.checkWait = () => { if (sm.onClock) checkWait(); };
      sm.stall = 0;
      sm.running = false; // ClockAlarm.scheduled stays true after firing: our own flag
      const period = () => ((sm.clockDivInt || 65536) + sm.clockDivFrac / 256) * 1e9 / SYS_HZ;
      const clock = () => {
        if (sm.stall > 0) { sm.stall--; return; }
        sm.onClock = true;
        const c0 = sm.cycles;
        if (sm.waiting) {
          sm.checkWait();
          if (!sm.waiting) sm.stall = sm.cycles - c0; // the wait's [delay]
        } else {
          sm.updatePC = true;
          sm.executeInstruction(pio.instructions[sm.pc]);
          if (sm.updatePC) sm.nextPC();
          if (!sm.waiting) sm.stall = sm.cycles - c0 - 1;
        }
        sm.onClock = false;
      };
      sm.alarm = mcu.clock.createAlarm(() => {
        if (!sm.enabled) { sm.running = false; return; }
        clock();
        stats.pio++;
        pio.checkChangedPins();
        sm.alarm.schedule(period());
      });
      sm.start = () => { if (sm.enabled && !sm.running) { sm.running = true; sm.alarm.schedule(period()); } };
    }
    const write = pio.writeUint32.bind(pio);
    pio.writeUint32 = (offset, value) => {
      write(offset, value);
      for (const sm of pio.machines) sm.start();
    };
  }
}

// ---- The W5500 bridge.
const send = (op, body) => {
  const head = Buffer.alloc(9);
  head.write(op, 0, 'latin1');
  head.writeDoubleLE(now(), 1);
  fs.writeSync(REQ, Buffer.concat([head, body]));
};
const receive = (n) => {
  const buf = Buffer.alloc(n);
  for (let got = 0; got < n;) {
    const r = fs.readSync(RESP, buf, got, n - got, null);
    if (!r) exit('bridge closed', 4);
    got += r;
  }
  return buf;
};
function bridgeW5500() {
  const spi = mcu.spi[Number(opt.spi || 0)];
  const hdr = Buffer.alloc(3);
  let pos = 0, written = [], miso = null, mi = 0, rx = 0;
  mcu.gpio[Number(opt.cs)].addListener((state, old) => {
    if (state === old) return;
    if (state === GPIOPinState.High && pos > 3 && hdr[2] & 4) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(3 + written.length);
      send('W', Buffer.concat([len, hdr, Buffer.from(written)]));
    }
    pos = 0; written = []; miso = null;
  });
  const done = mcu.clock.createAlarm(() => spi.completeTransmit(rx));
  spi.onTransmit = (v) => {
    rx = 0;
    stats.spi++;
    if (pos < 3) hdr[pos] = v;
    else if (hdr[2] & 4) written.push(v);
    else {
      if (!miso || mi >= miso.length) {
        // Registers byte by byte (reading them has effects in the chip); RX buffer in blocks.
        const n = ((hdr[2] >> 3) & 3) === 3 ? 256 : 1;
        const count = Buffer.alloc(2);
        count.writeUInt16BE(n);
        send(miso ? 'C' : 'R', miso ? count : Buffer.concat([hdr, count]));
        miso = receive(n); mi = 0;
      }
      rx = miso[mi++];
    }
    pos++;
    done.schedule(SPI_BYTE_NS);
  };
}

// ---- The HAN line: UART bit timing at simulated times, bursts one after another.
let hanLevel = inputs.length ? !!inputs[0][1] : true; // the level after the last queued edge
let hanFree = 0; // simulated time when the line is free for the next burst
const hanEdges = []; // [t, level, burst id or null]
function hanEdge() {
  const [, level, id] = hanEdges.shift();
  levels.set(hanPin, level);
  mcu.gpio[hanPin].setInputValue(level);
  if (id !== null) out({ ev: 'han', id, t: now() });
  if (hanEdges.length) hanAlarm.schedule(Math.max(0, hanEdges[0][0] - now()));
}
function hanBurst({ id, frames, format = '8E1', invert = false, baud = 2400, gap_ms = 500, delay_ms = 50 }) {
  const bitNs = 1e9 / baud;
  const wasIdle = !hanEdges.length;
  let t = Math.max(now() + delay_ms * 1e6, hanFree);
  const edge = (level) => { if (level !== hanLevel) { hanEdges.push([t, level, null]); hanLevel = level; } };
  edge(!invert); // idle (a polarity change shows as a level change here)
  for (const hex of frames) {
    for (const byte of Buffer.from(hex, 'hex')) {
      let ones = 0;
      const bits = [0];
      for (let i = 0; i < 8; i++) { const b = (byte >> i) & 1; bits.push(b); ones += b; }
      if (format === '8E1') bits.push(ones & 1);
      bits.push(1);
      for (const b of bits) { edge(!!b !== invert); t += bitNs; }
    }
    t += gap_ms * 1e6;
  }
  hanEdges.push([t, !invert, id]); // the report, at the line's idle level
  hanFree = t;
  if (wasIdle) hanAlarm.schedule(Math.max(0, hanEdges[0][0] - now()));
}

// ---- Console (USB CDC), commands, wall-clock reports.
// rp2040js's USBCDC answers every OUT transfer the device arms at once, with an empty packet
// when nothing was typed; TinyUSB arms it again and the chip takes a USB interrupt every
// ~28 us for ever (36,000 a simulated second), so the core never sleeps (WFI) and time.sleep
// costs as much as work. A real host NAKs until it has data: the transfer stays armed, no
// interrupt. Here too: an armed transfer with nothing to give waits for typed bytes.
let armed = null; // the size of the OUT transfer the device armed while nothing was typed
function hostNaks() {
  armed = null;
  mcu.usbCtrl.onEndpointRead = (endpoint, size) => {
    if (endpoint !== cdc.outEndpoint) return;
    if (cdc.txFIFO.empty) armed = size;
    else hostSends(size);
  };
}
function hostSends(size) {
  const buffer = new Uint8Array(Math.min(size, cdc.txFIFO.itemCount));
  for (let i = 0; i < buffer.length; i++) buffer[i] = cdc.txFIFO.pull();
  mcu.usbCtrl.endpointReadDone(cdc.outEndpoint, buffer);
}
function type(text) {
  for (const ch of Buffer.from(text, 'latin1')) cdc.sendSerialByte(ch);
  if (armed !== null && !cdc.txFIFO.empty) { const size = armed; armed = null; hostSends(size); }
}
let line = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  line += chunk;
  for (let i; (i = line.indexOf('\n')) >= 0; line = line.slice(i + 1)) {
    const cmd = JSON.parse(line.slice(0, i));
    if (cmd.cmd === 'han') hanBurst(cmd);
    else if (cmd.cmd === 'type') type(cmd.text);
    else if (cmd.cmd === 'reset') { if (!sim.stopped) reset(); } // the reset button (RUN pin)
    else if (cmd.cmd === 'quit') exit('quit');
  }
});
process.stdin.on('end', () => exit('stdin closed'));
// sm: per PIO, per state machine: 1 enabled + 2 stepped by its clock alarm
const smState = () => mcu.pio.map((p) => p.machines.map((m) => (m.enabled ? 1 : 0) + (m.running ? 2 : 0)).join('')).join('/');
setInterval(() => out({ t: now(), ...stats, sm: smState(), pc: mcu.core.PC.toString(16) }), 200);
setTimeout(() => exit('timeout', 2), Number(opt.timeout || 600) * 1000);

power(image);
