/** Identifiers: time-ordered, URL-safe, short. @module */

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

/** A new id such as `run_01j9x7...`: sortable by creation time, 18 random bits of tie-break per ms. */
export function newId(prefix: string, now: number = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  let rand = "";
  for (const b of bytes) rand += ALPHABET[b % 32];
  return `${prefix}_${time}${rand}`;
}
