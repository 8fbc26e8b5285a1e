/**
 * VMCS shadowing for L1 (arch/x86/kvm/vmx/nested.c: init_vmcs_shadow_fields,
 * copy_shadow_to_vmcs12, copy_vmcs12_to_shadow, set_current_vmptr,
 * vmx_disable_shadow_vmcs, handle_vmwrite's mirroring of read-only fields).
 *
 * While L1 runs with a current vmcs12, vmcs01 has SECONDARY_EXEC_SHADOW_VMCS
 * set and its VMCS-link pointer names vmcs01's shadow VMCS. An L1 VMREAD or
 * VMWRITE of a field whose bit is clear in KVM's VMREAD or VMWRITE bitmap is
 * then done by the CPU on the shadow VMCS, without a VM-exit; every other one
 * exits and KVM emulates it against vmcs12 (handleVmread/handleVmwrite).
 *
 * `shadowingPath` builds a path from a few choices (the field lists, how the
 * VMWRITE bitmap is chosen, what copy_shadow_to_vmcs12 copies, whether an
 * emulated VMWRITE of a read-only-shadowed field is mirrored into the shadow
 * VMCS); `copy-all` and `intercept-ro` are two settings of it, and so are the
 * broken variants kept as fixtures.
 *
 * The path's private state (`ShadowVmcsState`, in `vcpu.areas['shadow-vmcs']`)
 * is the shadow VMCS itself. Its `active` flag and `readSlots` let `archView`
 * show vmcs12 as L1 sees it (shadowed fields come from the shadow VMCS while
 * L1 runs), so a shadow VMCS that disagrees with what L1 should read is a
 * state difference even before L1 reads it.
 */
import {
  INVALID_GPA,
  VMCS,
  VMCS12_SLOT_COUNT,
  VMCS_SHADOW_RO_FIELDS,
  VMCS_SHADOW_RW_FIELDS,
  VMX_AR_BYTES_MASK,
  VmcsField,
  isArBytesField,
  vmcsFieldByEncoding,
} from '@nvx/arch';
import type { Outcome, WorldConfig } from '@nvx/trace';
import { Ctx, writable } from '../../ctx';
import type { Vcpu, World } from '../../state';
import type { ShadowVmcsPath, ShadowVmcsState } from '../../paths';
import { slotRead, slotWrite } from '../../vmcs12';
import { vmcs12AsL1Sees } from '../../hash';

/** The size of a VMREAD or VMWRITE bitmap (one bit per encoding 0..0x7fff). */
export const VMX_BITMAP_SIZE = 4096;

/** A field list as vmcs_shadow_fields.h gives it: encodings, each 64-bit field followed by its _HIGH half. */
export interface ShadowFieldLists {
  ro: readonly number[];
  rw: readonly number[];
}

/** The current upstream lists (seed 002 applied: GUEST_CS/SS_AR_BYTES are read-only shadowed). */
export const SHADOW_FIELDS_UPSTREAM: ShadowFieldLists = Object.freeze({ ro: VMCS_SHADOW_RO_FIELDS, rw: VMCS_SHADOW_RW_FIELDS });

/**
 * The lists before "KVM: nVMX: Intercept VMWRITEs to GUEST_{CS,SS}_AR_BYTES"
 * (2019): the two AR_BYTES fields were read/write shadowed.
 */
export const SHADOW_FIELDS_BEFORE_2019: ShadowFieldLists = Object.freeze({
  ro: Object.freeze(VMCS_SHADOW_RO_FIELDS.filter((e) => e !== VMCS.GUEST_CS_AR_BYTES && e !== VMCS.GUEST_SS_AR_BYTES)),
  rw: Object.freeze([...VMCS_SHADOW_RW_FIELDS, VMCS.GUEST_CS_AR_BYTES, VMCS.GUEST_SS_AR_BYTES]),
});

/** What init_vmcs_shadow_fields builds for one world configuration. */
export interface ShadowVmcsSetup {
  /** vmx_vmread_bitmap: 1 = VMREAD exits */
  vmreadBitmap: Uint8Array;
  /** vmx_vmwrite_bitmap: 1 = VMWRITE exits (RO fields always, RW fields the host lacks) */
  vmwriteBitmap: Uint8Array;
  /** the runtime shadow_read_write_fields: _HIGH entries and RW fields the host lacks dropped */
  rw: readonly VmcsField[];
  /** the runtime shadow_read_only_fields: _HIGH entries dropped */
  ro: readonly VmcsField[];
  /** encodings tagged SHADOW_FIELD_RW / SHADOW_FIELD_RO in the list (is_shadow_field_rw/ro: the compile-time lists) */
  isRw: ReadonlySet<number>;
  isRo: ReadonlySet<number>;
  /** vmcs12 slots L1 reads from the shadow VMCS without exit */
  readSlots: readonly number[];
}

/** RW fields whose hardware may be absent: left intercepted without it ("the processor cannot vmwrite to fields that don't exist on bare metal"). */
function hostHas(cfg: WorldConfig, f: VmcsField): boolean {
  switch (f.shadowNeeds) {
    case 'apicv':
      return cfg.apicv;
    case 'pml':
      return cfg.pml;
    case 'preemption-timer':
      return cfg.preemptionTimer;
    default:
      return true;
  }
}

function clearBit(bm: Uint8Array, enc: number): void {
  bm[enc >> 3] &= ~(1 << (enc & 7));
}

/** init_vmcs_shadow_fields for one configuration of the host. */
export function initVmcsShadowFields(lists: ShadowFieldLists, cfg: WorldConfig): ShadowVmcsSetup {
  const vmreadBitmap = new Uint8Array(VMX_BITMAP_SIZE).fill(0xff);
  const vmwriteBitmap = new Uint8Array(VMX_BITMAP_SIZE).fill(0xff);
  const ro: VmcsField[] = [];
  const rw: VmcsField[] = [];
  const field = (e: number) => {
    const f = vmcsFieldByEncoding(e);
    if (!f) throw new Error(`shadow field 0x${e.toString(16)} is not a vmcs12 field`);
    return f;
  };
  for (const e of lists.ro) {
    const f = field(e);
    clearBit(vmreadBitmap, e);
    if (!f.isHigh) ro.push(f); // a 64-bit host moves the whole field with the full encoding
  }
  for (const e of lists.rw) {
    const f = field(e);
    if (!hostHas(cfg, f)) continue;
    clearBit(vmwriteBitmap, e);
    clearBit(vmreadBitmap, e);
    if (!f.isHigh) rw.push(f);
  }
  const readSlots = [...new Set([...ro, ...rw].map((f) => f.slot))].sort((a, b) => a - b);
  return { vmreadBitmap, vmwriteBitmap, rw, ro, isRw: new Set(lists.rw), isRo: new Set(lists.ro), readSlots };
}

/** 1 in a VMREAD/VMWRITE bitmap, or an encoding with bits 31:15 set: the instruction exits. */
export function vmxBitmapExits(bm: Uint8Array, field: number): boolean {
  if (!(field >= 0 && field < 0x8000)) return true;
  return (bm[field >> 3] & (1 << (field & 7))) !== 0;
}

// ---- the shadow VMCS: vmcs01.shadow_vmcs, kept in the path's private state ----

export type { ShadowVmcsState };

export function shadowState(v: Vcpu): ShadowVmcsState | undefined {
  return v.areas['shadow-vmcs'] as ShadowVmcsState | undefined;
}

export { slotRead, slotWrite };

/**
 * The CPU drops the reserved bits of the AR_BYTES fields on VMWRITE (some
 * Intel CPUs do; the model's CPU is one of them, and KVM emulates the same
 * for the writes it intercepts, so both agree).
 */
function hardwareValue(field: number, value: bigint): bigint {
  return isArBytesField(field) ? value & BigInt(VMX_AR_BYTES_MASK) : value;
}

export { vmcs12AsL1Sees };

// ---- one path, from a few choices ----

export interface ShadowingOptions {
  name: string;
  summary: string;
  /** the field lists (vmcs_shadow_fields.h as of the modelled tree) */
  lists: ShadowFieldLists;
  /**
   * Before seed 002: with VMWRITE-any-field exposed, the VMWRITE bitmap is the
   * VMREAD bitmap (RO fields written without exit); with it hidden, the
   * stricter bitmap, only so that such writes fail. Seed 002: always the
   * stricter one.
   */
  vmwriteBitmapIsReadBitmap: boolean;
  /** copy_shadow_to_vmcs12 copies the RO list too when VMWRITE-any-field is exposed (before seed 002) */
  copyRoToVmcs12: boolean;
  /** handle_vmwrite writes an intercepted VMWRITE of an RO-shadowed field into the shadow VMCS too (seed 002) */
  mirrorRo: boolean;
}

const OK: Outcome = Object.freeze({ k: 'ok' });

/** Setups by configuration (the four host bits that change them), one cache per path. */
function setupCache(lists: ShadowFieldLists): (cfg: WorldConfig) => ShadowVmcsSetup {
  const cache: (ShadowVmcsSetup | undefined)[] = [];
  return (cfg) => {
    const key = (cfg.apicv ? 1 : 0) | (cfg.pml ? 2 : 0) | (cfg.preemptionTimer ? 4 : 0);
    return (cache[key] ??= initVmcsShadowFields(lists, cfg));
  };
}

/** A path built by `shadowingPath`: the interface plus its choices, its setups, and variants of it. */
export interface ShadowingPath extends ShadowVmcsPath {
  readonly options: ShadowingOptions;
  /** init_vmcs_shadow_fields for this path's lists and a world configuration (cached) */
  setup(cfg: WorldConfig): ShadowVmcsSetup;
  /** the same path with some choices changed (a new path: give it a new name) */
  variant(over: Partial<ShadowingOptions> & { name: string; summary: string }): ShadowingPath;
}

/** A path with hardware VMCS shadowing, built from the choices in `o`. */
export function shadowingPath(o: ShadowingOptions): ShadowingPath {
  const setup = setupCache(o.lists);
  const vmwriteBitmap = (cfg: WorldConfig) => {
    const s = setup(cfg);
    return o.vmwriteBitmapIsReadBitmap && cfg.vmwriteAnyField ? s.vmreadBitmap : s.vmwriteBitmap;
  };
  /** the shadow VMCS L1's instructions reach now, if any */
  const live = (w: World, v: Vcpu): ShadowVmcsState | null => {
    const s = shadowState(v);
    // Shadowing follows the current vmcs12: an eVMCS in use leaves current_vmptr invalid.
    return s && s.active && w.config.shadowVmcs && v.nested.currentVmptr !== INVALID_GPA ? s : null;
  };
  const copyShadowToVmcs12 = (ctx: Ctx, v: Vcpu, fields: readonly VmcsField[]) => {
    const s = shadowState(v)!;
    const arr = writable(ctx, v.nested, 'vmcs12');
    for (const f of fields) arr[f.slot] = s.shadow[f.slot];
    ctx.cost.shadowVmcsLoads++;
    ctx.cost.shadowFieldsCopiedIn += fields.length;
  };
  return {
    area: 'shadow-vmcs',
    name: o.name,
    summary: o.summary,
    options: o,
    setup,
    variant: (over) => shadowingPath({ ...o, ...over }),
    init: (w): ShadowVmcsState => ({
      active: false,
      shadow: new BigUint64Array(VMCS12_SLOT_COUNT),
      readSlots: w.config.shadowVmcs ? [...setup(w.config).readSlots] : [],
    }),

    vmread(_ctx, w, v, field) {
      const s = live(w, v);
      if (!s || vmxBitmapExits(setup(w.config).vmreadBitmap, field)) return null;
      return { k: 'value', value: slotRead(s.shadow, vmcsFieldByEncoding(field)!) };
    },

    vmwrite(ctx, w, v, field, value) {
      const s = live(w, v);
      if (!s || vmxBitmapExits(vmwriteBitmap(w.config), field)) return null;
      slotWrite(writable(ctx, s, 'shadow'), vmcsFieldByEncoding(field)!, hardwareValue(field, value));
      return OK;
    },

    setCurrentVmptr(_ctx, w, v) {
      if (w.config.shadowVmcs) shadowState(v)!.active = true;
    },

    copyShadowToVmcs12(ctx, w, v) {
      if (!live(w, v)) return;
      const s = setup(w.config);
      const withRo = o.copyRoToVmcs12 && w.config.vmwriteAnyField;
      copyShadowToVmcs12(ctx, v, withRo ? [...s.rw, ...s.ro] : s.rw);
    },

    copyVmcs12ToShadow(ctx, w, v) {
      const st = live(w, v);
      if (!st) return;
      const s = setup(w.config);
      const arr = writable(ctx, st, 'shadow');
      const src = v.nested.vmcs12;
      for (const f of s.rw) arr[f.slot] = src[f.slot];
      for (const f of s.ro) arr[f.slot] = src[f.slot];
      ctx.cost.shadowVmcsLoads++;
      ctx.cost.shadowFieldsCopiedOut += s.rw.length + s.ro.length;
    },

    emulatedVmwrite(ctx, w, v, f, value) {
      if (!o.mirrorRo) return;
      const st = live(w, v);
      if (!st) return;
      const s = setup(w.config);
      if (s.isRw.has(f.encoding) || !s.isRo.has(f.encoding)) return;
      // vmcs_load(shadow); __vmcs_writel(field, value); vmcs_clear(shadow); vmcs_load(current)
      slotWrite(writable(ctx, st, 'shadow'), f, value);
      ctx.cost.shadowVmcsLoads++;
    },

    release(ctx, w, v) {
      const st = shadowState(v)!;
      if (!st.active) return;
      this.copyShadowToVmcs12(ctx, w, v);
      // vmx_disable_shadow_vmcs
      st.active = false;
      v.nested.needVmcs12ToShadowSync = false;
    },

    free(ctx, _w, v) {
      const st = shadowState(v)!;
      st.active = false;
      v.nested.needVmcs12ToShadowSync = false;
      // vmcs_clear + free_vmcs; VMXON allocates a zeroed one again
      if (ctx.inPlace) st.shadow.fill(0n);
      else {
        st.shadow = new BigUint64Array(VMCS12_SLOT_COUNT);
        ctx.fresh?.add(st.shadow);
      }
    },

    explain(w, v): Record<string, string> {
      const st = shadowState(v);
      if (!st) return {};
      const s = setup(w.config);
      return {
        'shadowing on (vmcs01 SHADOW_VMCS, link pointer at the shadow VMCS)': String(st.active),
        'fields L1 reads without exit': String(s.ro.length + s.rw.length),
        'fields L1 writes without exit': String(o.vmwriteBitmapIsReadBitmap && w.config.vmwriteAnyField ? s.ro.length + s.rw.length : s.rw.length),
      };
    },
  };
}
