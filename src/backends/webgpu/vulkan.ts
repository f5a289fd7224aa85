// Why WebGPU finds no adapter on Linux, in words a user can act on. Dawn runs on Vulkan there and
// needs, in order: the Vulkan loader (libvulkan.so.1), a driver manifest (an "ICD" JSON file naming
// the driver library), and the driver library's own dependencies: NVIDIA's Vulkan driver is
// libGLX_nvidia.so.0, which needs the GL dispatch library (libglvnd's libGLdispatch.so.0); without
// it Dawn says only "Found no drivers". Seen on an H200 machine (issue 13).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const LIB_DIRS = [
  `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`,
  '/usr/lib64',
  '/usr/lib',
  '/usr/local/lib',
  '/usr/local/nvidia/lib64',
];

function libraryDirs(): string[] {
  return [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), ...LIB_DIRS];
}

export function hasLibrary(name: string): boolean {
  return libraryDirs().some((dir) => existsSync(join(dir, name)));
}

/** A GPU that Vulkan could drive: a DRM render node, an NVIDIA device, or WSL's GPU. */
export function hasGpuDevice(): boolean {
  const dri = existsSync('/dev/dri') ? readdirSync('/dev/dri').some((n) => n.startsWith('renderD')) : false;
  return dri || hasNvidiaDevice() || existsSync('/dev/dxg');
}

function hasNvidiaDevice(): boolean {
  return existsSync('/dev/nvidia0');
}

/** The Vulkan driver manifests the loader would read, as it looks for them. */
export function icdFiles(): string[] {
  const named = process.env.VK_DRIVER_FILES ?? process.env.VK_ICD_FILENAMES;
  if (named) return named.split(':').filter((f) => f !== '' && existsSync(f));
  const dataDirs = (process.env.XDG_DATA_DIRS ?? '/usr/local/share:/usr/share').split(':').filter(Boolean);
  const dirs = ['/etc/vulkan/icd.d', ...dataDirs.map((d) => join(d, 'vulkan/icd.d'))];
  return dirs.flatMap((dir) =>
    existsSync(dir)
      ? readdirSync(dir)
          .filter((f) => f.endsWith('.json'))
          .map((f) => join(dir, f))
      : [],
  );
}

/** Where NVIDIA's ICD file usually is (the driver package, or the container toolkit's mount). */
const NVIDIA_ICDS = [
  '/usr/share/vulkan/icd.d/nvidia_icd.json',
  '/etc/vulkan/icd.d/nvidia_icd.json',
  '/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json',
];

function driverLibrary(icd: string): string | undefined {
  try {
    const manifest = JSON.parse(readFileSync(icd, 'utf8')) as { ICD?: { library_path?: string } };
    return manifest.ICD?.library_path;
  } catch {
    return undefined;
  }
}

/**
 * What stops Vulkan from reaching a GPU here, with the fix, or undefined when nothing we can see
 * does (then the adapter request itself says what is wrong).
 */
export function vulkanProblem(): string | undefined {
  if (!hasLibrary('libvulkan.so.1')) return 'no Vulkan loader (libvulkan.so.1): apt-get install libvulkan1';
  if (!hasGpuDevice()) return 'no GPU device (/dev/dri/renderD*, /dev/nvidia*)';
  const icds = icdFiles();
  if (hasNvidiaDevice()) {
    const nvidia = icds.filter((f) => /nvidia/i.test(driverLibrary(f) ?? f));
    if (nvidia.length === 0) {
      const found = NVIDIA_ICDS.find((f) => existsSync(f));
      return found
        ? `an NVIDIA GPU, but the Vulkan loader is not told about its driver: export VK_DRIVER_FILES=${found}`
        : "an NVIDIA GPU but no NVIDIA Vulkan driver file (nvidia_icd.json): install the driver's Vulkan part " +
            '(Debian/Ubuntu: libnvidia-gl-<version>), or in a container set NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics';
    }
    if (!hasLibrary('libGLdispatch.so.0')) {
      return "NVIDIA's Vulkan driver (libGLX_nvidia.so.0) needs the GL dispatch library, or Dawn finds no drivers: apt-get install libglvnd0";
    }
    return undefined;
  }
  if (icds.length === 0) {
    return 'no Vulkan driver file (ICD) in /usr/share/vulkan/icd.d: apt-get install mesa-vulkan-drivers (AMD, Intel)';
  }
  return undefined;
}
