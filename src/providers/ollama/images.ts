/**
 * Images for `llm/vision` (and `images` in chat messages or generate): each entry is either
 * base64 data (as Ollama wants it; a `data:` URL prefix is stripped) or a file path resolved
 * against the workflow's directory. Files are read only inside that directory: a path that
 * escapes it (`..`, an absolute path elsewhere, a symlink pointing out) is refused.
 *
 * @module
 */

import { GleitzeitError } from "../../core/errors.ts";

/** Largest image file read from disk. */
export const MAX_IMAGE_BYTES = 32 * 1024 * 1024;

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const DATA_URL = /^data:[^;,]*;base64,/i;

/** True when `s` looks like base64 data rather than a path. */
export function isBase64(s: string): boolean {
  const compact = s.replace(/\s+/g, "");
  return compact.length > 0 && compact.length % 4 === 0 && BASE64.test(compact);
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    binary += String.fromCharCode(...bytes.subarray(i, i + step));
  }
  return btoa(binary);
}

function isAbsolute(p: string): boolean {
  return p.startsWith("/") || /^[A-Za-z]:[\\/]/.test(p);
}

function join(base: string, rel: string): string {
  return `${base.replace(/[\\/]+$/, "")}/${rel}`;
}

function inside(dir: string, file: string): boolean {
  const d = dir.replace(/[\\/]+$/, "");
  return file === d || file.startsWith(`${d}/`) || file.startsWith(`${d}\\`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

function paramError(message: string, details: Record<string, unknown>, hint?: string) {
  return new GleitzeitError("TASK_PARAMETER_ERROR", message, { details, hint });
}

/**
 * Turns one `images` entry into base64. `baseDir` is the workflow's directory (the current
 * directory when absent); the resolved file must lie inside it.
 */
export async function resolveImage(entry: string, baseDir: string | undefined): Promise<string> {
  const found = await locateImage(entry, baseDir);
  return "data" in found ? found.data : encodeBase64(await Deno.readFile(found.file));
}

/**
 * Where one `images` entry's bytes are: its base64 data, or the file (checked as resolveImage
 * checks it: inside the workflow's directory, a file, not too large), without reading it.
 * Throws TASK_PARAMETER_ERROR as resolveImage does (`workflow validate` says so ahead).
 */
export async function locateImage(
  entry: string,
  baseDir: string | undefined,
): Promise<{ data: string } | { file: string }> {
  const trimmed = entry.trim();
  if (DATA_URL.test(trimmed)) return { data: trimmed.replace(DATA_URL, "").replace(/\s+/g, "") };
  const root = baseDir ?? Deno.cwd();
  const candidate = isAbsolute(trimmed) ? trimmed : join(root, trimmed);
  // A short base64-looking string may be a path without extension (`images/logo`): an existing
  // file wins.
  if (isBase64(trimmed) && (trimmed.length > 1024 || !(await exists(candidate)))) {
    return { data: trimmed.replace(/\s+/g, "") };
  }
  let realRoot: string;
  let realFile: string;
  try {
    realRoot = await Deno.realPath(root);
  } catch (e) {
    throw paramError(`workflow directory ${root} is not readable: ${(e as Error).message}`, {
      baseDir: root,
    });
  }
  try {
    realFile = await Deno.realPath(candidate);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw paramError(
        `image file not found: ${trimmed} (resolved against ${root})`,
        { image: trimmed, baseDir: root },
        "give a path relative to the workflow file, or base64 data",
      );
    }
    throw paramError(`cannot read image ${trimmed}: ${(e as Error).message}`, { image: trimmed });
  }
  if (!inside(realRoot, realFile)) {
    throw paramError(
      `image path ${trimmed} is outside the workflow directory ${realRoot}; only files under it may be read`,
      { image: trimmed, baseDir: realRoot, resolved: realFile },
      "copy the image next to the workflow file, or pass it as base64",
    );
  }
  const info = await Deno.stat(realFile);
  if (!info.isFile) throw paramError(`image path ${trimmed} is not a file`, { image: trimmed });
  if (info.size > MAX_IMAGE_BYTES) {
    throw paramError(`image ${trimmed} is larger than ${MAX_IMAGE_BYTES} bytes`, {
      image: trimmed,
      size: info.size,
    });
  }
  return { file: realFile };
}

/** Resolves every entry of an `images` list, in order. */
export function resolveImages(
  images: readonly string[],
  baseDir: string | undefined,
): Promise<string[]> {
  return Promise.all(images.map((img) => resolveImage(img, baseDir)));
}
