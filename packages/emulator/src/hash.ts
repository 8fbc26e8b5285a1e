/**
 * Stable state hashes and the architectural view of a world.
 *
 * `stateHash` covers everything (path-private state included): the same
 * trace under the same profile gives the same hash, in one process or two.
 * `archView` keeps only what L1, L2 or the host could read (guest memory by
 * guest address, vmcs12 fields, MSRs, L0's own intercepts), so two profiles
 * can be compared; `diffArch` lists the differences.
 */
import { createHash } from 'node:crypto';
import { VMCS_FIELDS, msrName } from '@nvx/arch';
import { gfnToHva } from './memory';
import type { World } from './state';

function canon(v: unknown, out: string[]): void {
  if (v === null || v === undefined) out.push('n');
  else if (typeof v === 'bigint') out.push(`b${v.toString(16)}`);
  else if (typeof v === 'number' || typeof v === 'boolean') out.push(String(v));
  else if (typeof v === 'string') out.push(JSON.stringify(v));
  else if (ArrayBuffer.isView(v)) out.push(`x${Buffer.from((v as Uint8Array).buffer, (v as Uint8Array).byteOffset, (v as Uint8Array).byteLength).toString('base64')}`);
  else if (Array.isArray(v)) {
    out.push('[');
    for (const x of v) canon(x, out);
    out.push(']');
  } else {
    out.push('{');
    for (const k of Object.keys(v as object).sort()) {
      out.push(JSON.stringify(k));
      canon((v as Record<string, unknown>)[k], out);
    }
    out.push('}');
  }
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export function stateHash(w: World): string {
  const out: string[] = [];
  canon({ mem: w.mem, vcpus: w.vcpus }, out);
  return sha256(out.join(','));
}

/** Flat map of architectural facts: key -> printable value. */
export function archView(w: World): Map<string, string> {
  const m = new Map<string, string>();
  const hex = (v: bigint | number) => '0x' + v.toString(16);
  // Guest memory as L1 sees it through the memslots (pages that are all zero are left out).
  for (const s of w.mem.slots) {
    for (let i = 0; i < s.npages; i++) {
      // guestPage without its shared zero page: a frame the host has no contents for reads as zeros
      // and is left out, and skipping it here saves scanning 4 KiB per absent frame.
      const hva = gfnToHva(w.mem, s.gfn + i);
      const pfn = hva < 0 ? undefined : w.mem.hvaToPfn[hva];
      const page = pfn === undefined ? undefined : w.mem.pages[pfn];
      if (!page || page.every((b) => b === 0)) continue;
      m.set(`memory gfn ${hex(s.gfn + i)}`, sha256(Buffer.from(page).toString('hex')).slice(0, 16));
    }
    m.set(`memslot ${s.slot}`, `gfn ${hex(s.gfn)} npages ${s.npages} flags ${s.flags}`);
  }
  for (const v of w.vcpus) {
    const p = `vcpu ${v.id} `;
    const n = v.nested;
    m.set(p + 'vmxon', String(n.vmxon));
    m.set(p + 'current_vmptr', hex(n.currentVmptr));
    m.set(p + 'hv_evmcs_vmptr', hex(n.hvEvmcsVmptr));
    m.set(p + 'guest mode', String(n.guestMode));
    m.set(p + 'launch_state', String(n.launched));
    for (const f of VMCS_FIELDS) {
      if (f.isHigh) continue;
      const val = n.vmcs12[f.slot];
      if (val !== 0n) m.set(p + `vmcs12 ${f.name}`, hex(val));
    }
    for (const [k, val] of Object.entries(v.l1Msrs)) m.set(p + `L1 ${msrName(Number(k))}`, hex(val));
    for (const [k, val] of Object.entries(v.l2Msrs)) m.set(p + `L2 ${msrName(Number(k))}`, hex(val));
    m.set(p + 'vmcs01 MSR bitmap', sha256(Buffer.from(v.vmcs01MsrBitmap).toString('hex')).slice(0, 16));
  }
  return m;
}

export interface ArchDifference {
  key: string;
  a: string | undefined;
  b: string | undefined;
}

export function diffArch(a: World, b: World, limit = 50): ArchDifference[] {
  const va = archView(a);
  const vb = archView(b);
  const keys = [...new Set([...va.keys(), ...vb.keys()])].sort();
  const out: ArchDifference[] = [];
  for (const k of keys) {
    if (va.get(k) !== vb.get(k)) out.push({ key: k, a: va.get(k), b: vb.get(k) });
    if (out.length >= limit) break;
  }
  return out;
}

/** A digest of the architectural view, cheap to compare at checkpoints. */
export function archHash(w: World): string {
  const v = archView(w);
  return sha256([...v.entries()].map(([k, x]) => `${k}=${x}`).join('\n'));
}
