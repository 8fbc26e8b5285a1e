/**
 * The cpuid-fault area: the host (physical CPUs, host tasks, Linux's
 * switching of MSR 0x140), the guest's rules, what each path writes to
 * the MSR and when, and the two speeds agreeing on the new events.
 */
import { AREAS, Costs, CpuidFaultPath, Profile, Replayer, World, archView, initialState, parseProfile, stateHash, step } from '@nvx/emulator';
import { Outcome, TraceEvent, TraceHeader, WorldConfig, formatOutcome, makeHeader, parseEventLine } from '@nvx/trace';

function trace(text: string, config: Partial<WorldConfig> = {}): { header: TraceHeader; events: TraceEvent[] } {
  const header = makeHeader(config);
  const events = text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean)
    .map((l) => parseEventLine(l, header.config));
  return { header, events };
}

const PATHS = ['reference', 'cpuid-fault=hardware', 'cpuid-fault=hardware-lazy'] as const;

function run(text: string, spec: string, config: Partial<WorldConfig> = {}): { outs: string[]; cost: Costs; world: World } {
  const { header, events } = trace(text, config);
  const p = parseProfile(spec);
  const r = new Replayer(initialState(header, p), p);
  const outs = events.map((e) => formatOutcome(r.apply(e)));
  return { outs, cost: r.cost, world: r.peek() };
}

const msr = (w: World, cpu: number) => w.host.pcpus[cpu].miscFeaturesEnables;

describe('the area and its paths', () => {
  it('is registered with emulate as reference and hardware-lazy as optimized', () => {
    const a = AREAS['cpuid-fault'];
    expect(a.reference).toBe('emulate');
    expect(a.optimized).toBe('hardware-lazy');
    expect([...a.paths.keys()]).toEqual(expect.arrayContaining(['emulate', 'hardware', 'hardware-lazy']));
    expect(parseProfile('optimized').paths['cpuid-fault'].name).toBe('hardware-lazy');
    expect(parseProfile('reference').paths['cpuid-fault'].name).toBe('emulate');
  });

  it('wanted(): emulate clears bit 0, hardware installs the guest\'s, hardware-lazy only over a non-zero host value', () => {
    const { header } = trace('');
    const w = initialState(header, parseProfile('reference'));
    const v = w.vcpus[0];
    v.cpuidFault.miscFeaturesEnables = 1n;
    const want = (name: string, host: number) => (AREAS['cpuid-fault'].paths.get(name) as CpuidFaultPath).wanted!(w, v, host);
    expect([want('emulate', 0), want('emulate', 1), want('emulate', 3)]).toEqual([0, 0, 2]);
    expect([want('hardware', 0), want('hardware', 1)]).toEqual([1, 1]);
    expect([want('hardware-lazy', 0), want('hardware-lazy', 1)]).toEqual([0, 1]);
    // not in SMM, not while L2 runs (KVM's order)
    v.cpuidFault.smm = true;
    expect([want('hardware', 0), want('hardware-lazy', 1)]).toEqual([0, 0]);
    v.cpuidFault.smm = false;
    v.nested.guestMode = true;
    expect([want('hardware', 0), want('hardware-lazy', 1)]).toEqual([0, 0]);
    const arch = initialState(makeHeader({ l2CpuidFaultArchitectural: true }), parseProfile('reference'));
    arch.vcpus[0].cpuidFault.miscFeaturesEnables = 1n;
    arch.vcpus[0].nested.guestMode = true;
    expect((AREAS['cpuid-fault'].paths.get('hardware') as CpuidFaultPath).wanted!(arch, arch.vcpus[0], 0)).toBe(1);
  });
});

describe('the world at the first event', () => {
  it('has the physical CPUs idle with MSR 0x140 clear, and each vCPU on a CPU of its own', () => {
    const w = initialState(makeHeader({ vcpus: 2, pcpus: 3 }), parseProfile('reference'));
    expect(w.host.pcpus.map((p) => [p.miscFeaturesEnables, p.current])).toEqual([
      [0, -1],
      [0, -1],
      [0, -1],
      [0, -2],
      [0, -3],
    ]);
    expect(w.vcpus.map((v) => v.cpu)).toEqual([3, 4]);
    expect(w.vcpus[0].cpuidFault).toEqual({ platformInfo: 0x80000000n, miscFeaturesEnables: 0n, smm: false });
  });

  it('lets a vCPU that was never loaded run guest code as before', () => {
    for (const spec of PATHS) {
      expect(run('l1.cpuid 0x1 0x0 3\nl1.rdmsr MSR_IA32_TSC', spec).outs).toEqual([expect.stringMatching(/^cpuid /), 'value 0x0']);
    }
  });
});

describe('the host: Linux switches MSR 0x140 with the running task', () => {
  it('writes it only when the outgoing and incoming tasks differ in TIF_NOCPUID', () => {
    const r = run(
      `
      host.task-cpuid-fault 1 true    # runs on CPU 0 (its first), sets its flag: 1 write
      host.task-cpuid 1 0 3
      host.task-cpuid 2 0 3           # 1 -> 2: a write
      host.task-cpuid 3 0 3           # 2 -> 3: same flag, none
      host.task-cpuid 1 0 0           # 3 -> 1: a write; CPL 0 never faults
      host.task-cpuid-fault 1 true    # already on: nothing
      host.task-cpuid-fault 1 false   # a write
      host.task-cpuid 1 0 3
      `,
      'reference',
    );
    expect(r.outs).toEqual(['ok', 'gp', expect.stringMatching(/^cpuid/), expect.stringMatching(/^cpuid/), expect.stringMatching(/^cpuid/), 'ok', 'ok', expect.stringMatching(/^cpuid/)]);
    expect(r.cost.hostWrmsrs).toBe(4);
    expect(msr(r.world, 0)).toBe(0);
  });

  it('moves a task between CPUs: the CPU it leaves falls idle (and its MSR follows)', () => {
    const r = run('host.task-cpuid-fault 1 true\nhost.task-cpuid 1 1 3\nhost.task-cpuid 2 0 3', 'reference', { pcpus: 2 });
    expect(r.outs.slice(1)).toEqual(['gp', expect.stringMatching(/^cpuid/)]);
    expect([msr(r.world, 0), msr(r.world, 1)]).toEqual([0, 1]);
    expect(r.world.host.tasks[1]).toEqual({ nocpuid: true, cpu: 1, lastCpu: 1 });
    expect(r.world.host.pcpus[0].current).toBe(2);
  });

  it('refuses to turn faulting on without the hardware (ENODEV) and changes nothing then', () => {
    const r = run('host.task-cpuid-fault 1 true\nhost.task-cpuid-fault 1 false\nhost.vcpu-put\nhost.vcpu-thread-cpuid-fault true', 'reference', { cpuidFaultHw: false });
    expect(r.outs).toEqual([expect.stringMatching(/^ignored "the host has no CPUID faulting/), 'ok', 'value 0x0', expect.stringMatching(/ENODEV/)]);
    expect(r.cost.hostWrmsrs).toBe(0);
  });

  it('says why an impossible host event is ignored', () => {
    const bad: TraceEvent[] = [
      { kind: 'host.vcpu-load', vcpu: 5, cpu: 0 },
      { kind: 'host.vcpu-load', vcpu: 0, cpu: 7 },
      { kind: 'host.task-cpuid', task: 1, cpu: 9, cpl: 3 },
      { kind: 'host.vcpu-put', vcpu: 9 },
      { kind: 'host.smi', vcpu: 9 },
      { kind: 'host.platform-info', vcpu: 9, value: 0n },
      { kind: 'host.vcpu-thread-cpuid-fault', vcpu: 9, enable: true },
    ];
    const p = parseProfile('reference');
    const r = new Replayer(initialState(makeHeader({ pcpus: 2 }), p), p);
    const outs = bad.map((e) => formatOutcome(r.apply(e)));
    expect(outs).toEqual([
      'ignored "no such vCPU"',
      'ignored "no CPU 7 (config.pcpus is 2)"',
      'ignored "no CPU 9 (config.pcpus is 2)"',
      'ignored "no such vCPU"',
      'ignored "no such vCPU"',
      'ignored "no such vCPU"',
      'ignored "no such vCPU"',
    ]);
  });
});

describe('vCPU load and put', () => {
  it('runs guest code only while loaded; put reports the MSR the host sees', () => {
    const r = run(
      `
      host.vcpu-put
      l1.cpuid 0x1 0x0 0
      @1 l1.cpuid 0x1 0x0 0        # vCPU 1 still runs on its own CPU
      host.vcpu-load 1
      l1.cpuid 0x1 0x0 0
      @1 host.vcpu-load 1          # preempts vCPU 0 on CPU 1
      l1.cpuid 0x1 0x0 0
      `,
      'reference',
      { vcpus: 2, pcpus: 2 },
    );
    expect(r.outs).toEqual([
      'value 0x0',
      'ignored "vCPU 0 is not loaded (its thread is outside KVM_RUN)"',
      expect.stringMatching(/^cpuid/),
      'ok',
      expect.stringMatching(/^cpuid/),
      'ok',
      'ignored "vCPU 0 is not loaded (its thread is outside KVM_RUN)"',
    ]);
    expect(r.world.vcpus.map((v) => v.cpu)).toEqual([-1, 1]);
  });

  it('keeps L2 running across a put and a load', () => {
    const r = run(
      `
      l1.write 0x1000 4 0x11e57ed0
      l1.vmxon 0x1000
      l1.write 0x2000 4 0x11e57ed0
      l1.vmptrld 0x2000
      l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16
      l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x4006172
      l1.vmwrite VM_EXIT_CONTROLS 0x36dfb
      l1.vmwrite VM_ENTRY_CONTROLS 0x11fb
      l1.vmlaunch
      host.vcpu-put
      l2.vmcall
      host.vcpu-load 0
      l2.vmcall
      `,
      'reference',
    );
    expect(r.outs.slice(8)).toEqual(['entered', 'value 0x0', 'ignored "vCPU 0 is not loaded (its thread is outside KVM_RUN)"', 'ok', 'exit VMCALL qual=0x0']);
  });
});

describe('MSR 0x140 switching per path', () => {
  const GUEST_ON = `
    host.vcpu-load 0
    l1.wrmsr MSR_MISC_FEATURES_ENABLES 0x1
    l1.cpuid 0x1 0x0 3
    host.vcpu-put
    host.vcpu-load 0
    l1.cpuid 0x1 0x0 3
    host.vcpu-put
  `;

  it('host value 0, guest faulting on: only hardware writes the MSR, and faults without exits', () => {
    const counts = Object.fromEntries(PATHS.map((s) => [s, run(GUEST_ON, s).cost]));
    expect(PATHS.map((s) => [counts[s].wrmsrs, counts[s].cpuidExits, counts[s].gpWithoutExit])).toEqual([
      [0, 2, 0],
      [4, 0, 2],
      [0, 2, 0],
    ]);
    for (const s of PATHS) expect(run(GUEST_ON, s).outs).toEqual(['ok', 'ok', 'gp', 'value 0x0', 'ok', 'gp', 'value 0x0']);
  });

  it('host value 1 (the vCPU thread faults), guest faulting on: hardware and hardware-lazy leave the MSR alone, emulate clears and restores it', () => {
    const t = `host.vcpu-put\nhost.vcpu-thread-cpuid-fault true\n${GUEST_ON}`;
    const outs = run(t, 'reference').outs;
    expect(outs).toEqual(['value 0x0', 'ok', 'ok', 'ok', 'gp', 'value 0x1', 'ok', 'gp', 'value 0x1']);
    // emulate: clear at each load, restore at each put; hardware paths: clear at the first load, then the guest's value equals the host's
    expect(PATHS.map((s) => run(t, s).cost.wrmsrs)).toEqual([4, 2, 2]);
    for (const s of PATHS) {
      expect(run(t, s).outs).toEqual(outs);
      expect(msr(run(t, s).world, 0)).toBe(1);
    }
  });

  it('reads the host value once per load (a RDMSR), and not at all without the hardware feature', () => {
    expect(run(GUEST_ON, 'cpuid-fault=hardware').cost.rdmsrs).toBe(2);
    expect(run(GUEST_ON, 'cpuid-fault=hardware', { cpuidFaultHw: false }).cost).toMatchObject({ rdmsrs: 0, wrmsrs: 0, gpWithoutExit: 0, cpuidExits: 2 });
  });

  /** L1 with CPUID faulting on and a vmcs12 that enters (the must-be-1 control bits) */
  const L1_FAULTING_VMCS = `
      host.vcpu-load 0
      l1.wrmsr MSR_MISC_FEATURES_ENABLES 0x1
      l1.write 0x1000 4 0x11e57ed0
      l1.vmxon 0x1000
      l1.write 0x2000 4 0x11e57ed0
      l1.vmptrld 0x2000
      l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16
      l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x4006172
      l1.vmwrite VM_EXIT_CONTROLS 0x36dfb
      l1.vmwrite VM_ENTRY_CONTROLS 0x11fb
  `;

  it('hardware clears the bit at nested entries in KVM\'s order and keeps it in the architectural one', () => {
    const t = `${L1_FAULTING_VMCS}
      l1.vmlaunch
      l2.cpuid 0x1 0x0 3
      l1.vmresume
      l2.cpuid 0x1 0x0 0
    `;
    const kvm = run(t, 'cpuid-fault=hardware');
    expect(kvm.outs.slice(-4)).toEqual(['entered', 'exit CPUID qual=0x0', 'entered', 'exit CPUID qual=0x0']);
    // install at the WRMSR, then clear at each of the two entries and set again at each of the two exits
    expect(kvm.cost.wrmsrs).toBe(5);
    const arch = run(t, 'cpuid-fault=hardware', { l2CpuidFaultArchitectural: true });
    expect(arch.outs.slice(-4)).toEqual(['entered', 'gp', 'ignored "L1 is not running on vCPU 0: L2 is"', 'exit CPUID qual=0x0']);
    expect(arch.cost).toMatchObject({ wrmsrs: 1, gpWithoutExit: 1 });
    expect(run(t, 'reference', { l2CpuidFaultArchitectural: true }).outs).toEqual(arch.outs);
  });

  it('in the architectural order with L1 intercepting #GP, the hardware #GP and the one L0 injects give L1 the same exit', () => {
    // The SDM leaves VM_EXIT_INSTRUCTION_LEN undefined after a hardware exception exit: it must not tell the paths apart.
    const t = `${L1_FAULTING_VMCS}
      l1.vmwrite EXCEPTION_BITMAP 0x2000
      l1.vmlaunch
      l2.cpuid 0x1 0x0 3
      l1.vmread VM_EXIT_INSTRUCTION_LEN
      l1.vmread VM_EXIT_INTR_INFO
    `;
    const hw = run(t, 'cpuid-fault=hardware', { l2CpuidFaultArchitectural: true });
    const emu = run(t, 'reference', { l2CpuidFaultArchitectural: true });
    expect(hw.outs.slice(-3)).toEqual(['exit EXCEPTION_NMI qual=0x0', 'value 0x2', 'value 0x80000b0d']);
    expect(hw.cost).toMatchObject({ cpuidExits: 0 });
    expect(emu.outs).toEqual(hw.outs);
  });

  it('explains its state in a divergence report', () => {
    const r = run(GUEST_ON.split('\n').slice(0, 4).join('\n'), 'cpuid-fault=hardware');
    const facts = AREAS['cpuid-fault'].paths.get('hardware')!.explain!(r.world, r.world.vcpus[0], {});
    expect(facts).toMatchObject({ loaded: 'on CPU 0', 'host MSR 0x140 saved at load': '0x0', 'MSR 0x140 installed': '0x1', 'MSR 0x140 on its CPU now': '0x1' });
  });
});

describe('observations', () => {
  it('the architectural view has the guest\'s MSRs, SMM and the host-visible MSR 0x140, not a loaded CPU\'s', () => {
    const r = run('host.vcpu-load 0\nl1.wrmsr MSR_MISC_FEATURES_ENABLES 0x1\nhost.smi', 'cpuid-fault=hardware', { pcpus: 2 });
    const v = archView(r.world);
    expect(v.get('vcpu 0 MSR_MISC_FEATURES_ENABLES')).toBe('0x1');
    expect(v.get('vcpu 0 MSR_PLATFORM_INFO')).toBe('0x80000000');
    expect(v.get('vcpu 0 smm')).toBe('true');
    expect(v.get('cpu 1 MSR_MISC_FEATURES_ENABLES')).toBe('0x0');
    expect(v.has('cpu 0 MSR_MISC_FEATURES_ENABLES')).toBe(false);
    expect(v.get("vcpu 0's own cpu MSR_MISC_FEATURES_ENABLES")).toBe('0x0');
  });
});

describe('the two speeds agree on the new events', () => {
  const T = trace(
    `
    host.task-cpuid-fault 4 true
    host.task-cpuid 4 0 3
    host.vcpu-put
    host.vcpu-thread-cpuid-fault true
    host.vcpu-load 0
    l1.wrmsr MSR_MISC_FEATURES_ENABLES 0x1
    l1.cpuid 0x1 0x0 3
    host.smi
    l1.cpuid 0x1 0x0 3
    l1.rsm
    host.task-cpuid 5 0 3
    host.vcpu-load 1
    @1 host.vcpu-load 0
    host.platform-info 0x80000000
    l1.cpuid 0x1 0x0 3
    `,
    { vcpus: 2, pcpus: 2 },
  );

  it.each(PATHS)('%s: step (immer) and Replayer give the same outcomes and states, and old states never change', (spec) => {
    const p: Profile = parseProfile(spec);
    let s = initialState(T.header, p);
    const r = new Replayer(s, p);
    const history: [World, string][] = [];
    for (const e of T.events) {
      history.push([s, stateHash(s)]);
      const a = step(s, e, p);
      const b: Outcome = r.apply(e);
      expect(a.outcome).toEqual(b);
      s = a.state;
      expect(stateHash(s)).toBe(stateHash(r.peek()));
    }
    for (const [old, h] of history) expect(stateHash(old)).toBe(h);
  });
});
