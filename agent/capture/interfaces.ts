/**
 * Interface listing goes through the `cap` package (pcap_findalldevs); it is
 * the one thing we still use `cap` for, capture itself is our own addon
 * (see pcap-native.ts for why).
 */
export interface InterfaceAddress {
  addr: string;
  netmask?: string;
  broadaddr?: string;
}

export interface CaptureInterface {
  name: string;
  description?: string;
  addresses: InterfaceAddress[];
  loopback: boolean;
}

interface CapDevice {
  name: string;
  description?: string;
  addresses?: InterfaceAddress[];
  flags?: string;
}

export function listInterfaces(): CaptureInterface[] {
  // `cap` ships no type declarations.
  const { Cap } = require('cap') as { Cap: { deviceList(): CapDevice[] } };
  return Cap.deviceList().map((d) => ({
    name: d.name,
    ...(d.description ? { description: d.description } : {}),
    addresses: (d.addresses ?? []).map((a) => ({ ...a })),
    loopback: (d.flags ?? '').split(/[\s,|]+/).includes('PCAP_IF_LOOPBACK'),
  }));
}
