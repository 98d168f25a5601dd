// cdc-transform: write cdc-host transforms in JavaScript over row-style change events.
//
// The host hands a plugin batches of change events column by column (wit/transform.wit, world
// cdc:transform/transform@0.1.0). This module hides that: a transform is a class with a static
// `describe()`, an optional static `configure(config)` and `apply(event)` returning `Keep`, `Drop` or
// `reject(reason)`. `exportTransform(Class)` gives the `transformer` export; `cdc-transform-build`
// (bin/build.js) bundles a plugin and builds the component with componentize-js.
//
// Values are typed: text `string`, int32 and float64 `number`, int64 `bigint`, boolean, bytes
// `Uint8Array`, exact decimals `Decimal` (bigint unscaled + scale), dates `CdcDate` (days since
// 1970-01-01), timestamps `Timestamp` (bigint microseconds; `tz` for timestamptz), JSON `Json`;
// null is `null`. Columns are decoded once per batch, the first time an event asks for them.

/** Keep the event, with the plugin's writes applied. */
export const Keep = Object.freeze({ kind: "keep" });
/** Filter the event out on purpose (counted, not an error). */
export const Drop = Object.freeze({ kind: "drop" });
/** Refuse the event: it goes to the dead-letter table with `reason`. */
export function reject(reason) {
  return { kind: "reject", reason: String(reason) };
}

/** An exact decimal: `unscaled * 10^-scale`. */
export class Decimal {
  /** @param {bigint} unscaled @param {number} scale */
  constructor(unscaled, scale) {
    this.unscaled = BigInt(unscaled);
    this.scale = scale;
  }
  /** Parses `[+-]digits[.digits]` (surrounding whitespace allowed), keeping the written scale. */
  static parse(text) {
    const t = String(text).trim();
    const m = /^([+-]?)([0-9]*)(?:\.([0-9]*))?$/.exec(t);
    if (!m || (m[2] === "" && (m[3] ?? "") === "")) {
      throw new Error(`\`${text}\` is not a decimal`);
    }
    const frac = m[3] ?? "";
    const digits = BigInt((m[2] || "0") + frac);
    return new Decimal(m[1] === "-" ? -digits : digits, frac.length);
  }
  /** -1, 0 or 1 as this is below, equal to or above `other` (exactly, whatever the scales). */
  compare(other) {
    const o = other instanceof Decimal ? other : Decimal.from(other);
    const s = Math.max(this.scale, o.scale);
    const a = this.unscaled * 10n ** BigInt(s - this.scale);
    const b = o.unscaled * 10n ** BigInt(s - o.scale);
    return a < b ? -1 : a > b ? 1 : 0;
  }
  /** True when the value is zero. */
  isZero() {
    return this.unscaled === 0n;
  }
  /** A decimal from a bigint, an integral number or decimal text. */
  static from(v) {
    if (v instanceof Decimal) return v;
    if (typeof v === "bigint") return new Decimal(v, 0);
    if (typeof v === "number" && Number.isInteger(v)) return new Decimal(BigInt(v), 0);
    return Decimal.parse(String(v));
  }
  /** The value rescaled to `scale` digits; throws when digits would be lost. */
  rescale(scale) {
    if (scale >= this.scale) return new Decimal(this.unscaled * 10n ** BigInt(scale - this.scale), scale);
    const f = 10n ** BigInt(this.scale - scale);
    if (this.unscaled % f !== 0n) throw new Error(`${this} has more than ${scale} fractional digits`);
    return new Decimal(this.unscaled / f, scale);
  }
  /** The nearest float. */
  toNumber() {
    return Number(this.unscaled) / 10 ** this.scale;
  }
  /** Plain notation with the scale kept: `-42.50`. */
  toString() {
    const neg = this.unscaled < 0n;
    let digits = (neg ? -this.unscaled : this.unscaled).toString();
    let out;
    if (this.scale === 0) out = digits;
    else if (digits.length > this.scale) {
      out = digits.slice(0, digits.length - this.scale) + "." + digits.slice(digits.length - this.scale);
    } else out = "0." + "0".repeat(this.scale - digits.length) + digits;
    return (neg ? "-" : "") + out;
  }
}

/** A date: days since 1970-01-01. */
export class CdcDate {
  constructor(days) {
    this.days = days;
  }
  /** `YYYY-MM-DD`. */
  toISOString() {
    return new Date(this.days * 86400000).toISOString().slice(0, 10);
  }
  toString() {
    return `date(${this.days})`;
  }
}

/** A timestamp: microseconds since 1970-01-01T00:00:00 (UTC when `tz`). */
export class Timestamp {
  constructor(micros, tz) {
    this.micros = BigInt(micros);
    this.tz = !!tz;
  }
  /** As a JavaScript Date (milliseconds; sub-millisecond digits are cut). */
  toDate() {
    return new Date(Number(this.micros / 1000n));
  }
  toString() {
    return `${this.tz ? "timestamptz" : "timestamp"}(${this.micros})`;
  }
}

/** A JSON document (UTF-8 text), told apart from plain text. */
export class Json {
  constructor(text) {
    this.text = text;
  }
  toString() {
    return this.text;
  }
}

/** The WIT type name of a value as `event.get` returns it. */
export function typeName(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return "boolean";
  if (typeof v === "bigint") return "int64";
  if (typeof v === "number") return Number.isInteger(v) ? "int32" : "float64";
  if (typeof v === "string") return "text";
  if (v instanceof Uint8Array) return "bytes";
  if (v instanceof Decimal) return "decimal";
  if (v instanceof CdcDate) return "date";
  if (v instanceof Timestamp) return v.tz ? "timestamptz" : "timestamp";
  if (v instanceof Json) return "json";
  return typeof v;
}

/** Formats a value for messages exactly as every cdc-host SDK does (decimals keep their scale). */
export function formatValue(v) {
  if (v === null || v === undefined) return "null";
  if (v instanceof Uint8Array) return "0x" + Array.from(v, (b) => b.toString(16).padStart(2, "0")).join("");
  return String(v);
}

/** The operations, as `event.op` gives them. */
export const Op = Object.freeze({
  CREATE: "create",
  UPDATE: "update",
  DELETE: "delete",
  READ: "read",
  TRUNCATE: "truncate",
});

/** A declared column: `ColumnDef.text("full_name", "doc")`, `ColumnDef.decimal("x", 12, 2)`, ... */
export class ColumnDef {
  constructor(name, type, doc) {
    this.name = name;
    this.type = type; // { tag, val? } as in the WIT column-type variant
    this.doc = doc;
  }
  static of(name, tag, doc) {
    return new ColumnDef(name, { tag }, doc);
  }
  static text(name, doc) {
    return ColumnDef.of(name, "text", doc);
  }
  static int64(name, doc) {
    return ColumnDef.of(name, "int64", doc);
  }
  static decimal(name, precision, scale, doc) {
    return new ColumnDef(name, { tag: "decimal", val: { precision, scale } }, doc);
  }
}

/** The plugin's key/value configuration (values are strings, as the host passes them). */
export class Config {
  constructor(pairs = []) {
    this.values = new Map(pairs);
  }
  /** The raw value of `key`, or `fallback`. */
  get(key, fallback = undefined) {
    return this.values.has(key) ? this.values.get(key) : fallback;
  }
  /** A boolean: true/false, yes/no, on/off, 1/0 (any case); `fallback` when unset. */
  flag(key, fallback) {
    if (!this.values.has(key)) return fallback;
    const raw = this.values.get(key);
    const v = raw.trim().toLowerCase();
    if (["true", "yes", "on", "1"].includes(v)) return true;
    if (["false", "no", "off", "0"].includes(v)) return false;
    throw new Error(`config key \`${key}\`: invalid value \`${raw}\`: expected true or false`);
  }
  /** An exact decimal; `fallback` when unset. */
  decimal(key, fallback) {
    if (!this.values.has(key)) return fallback;
    const raw = this.values.get(key);
    try {
      return Decimal.parse(raw);
    } catch (e) {
      throw new Error(`config key \`${key}\`: invalid value \`${raw}\`: ${e.message}`);
    }
  }
}

let logWriter = null;
const LEVELS = ["trace", "debug", "info", "warn", "error"];

/** Where `log` writes: the component build sets the WIT `write` import; natively it goes to stderr. */
export function setLogWriter(write) {
  logWriter = write;
}

/** The host log (configuration and batch-level messages, not per event). */
export const log = Object.fromEntries(
  LEVELS.map((level) => [
    level,
    (message) => (logWriter ? logWriter(level, String(message)) : console.error(`[${level}] ${message}`)),
  ]),
);

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function decodeVar(v, present, make) {
  const { offsets, data } = v;
  const out = new Array(present.length);
  for (let i = 0; i < present.length; i++) {
    out[i] = present[i] ? make(data.subarray(offsets[i], offsets[i + 1])) : null;
  }
  return out;
}

/** The values of one WIT column (`null` where not present). */
export function decodeColumn(col) {
  const { present } = col;
  const { tag, val } = col.values;
  const n = present.length;
  switch (tag) {
    case "text":
      return decodeVar(val, present, (b) => decoder.decode(b));
    case "json":
      return decodeVar(val, present, (b) => new Json(decoder.decode(b)));
    case "bytes":
      return decodeVar(val, present, (b) => b.slice());
    case "decimal": {
      const scale = val.type.scale;
      const raw = val.unscaled;
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      const out = new Array(n);
      for (let i = 0; i < n; i++) {
        if (!present[i]) {
          out[i] = null;
          continue;
        }
        const lo = view.getBigUint64(i * 16, true);
        const hi = view.getBigInt64(i * 16 + 8, true);
        out[i] = new Decimal((hi << 64n) | lo, scale);
      }
      return out;
    }
    case "date":
      return Array.from(val, (d, i) => (present[i] ? new CdcDate(d) : null));
    case "timestamp":
    case "timestamptz":
      return Array.from(val, (t, i) => (present[i] ? new Timestamp(t, tag === "timestamptz") : null));
    default:
      return Array.from(val, (x, i) => (present[i] ? x : null));
  }
}

function packVar(values, encode) {
  const n = values.length;
  const offsets = new Uint32Array(n + 1);
  const chunks = new Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v !== null && v !== undefined) {
      const b = encode(v);
      chunks[i] = b;
      total += b.length;
    }
    offsets[i + 1] = total;
  }
  const data = new Uint8Array(total);
  for (let i = 0; i < n; i++) if (chunks[i]) data.set(chunks[i], offsets[i]);
  return { offsets, data };
}

/** One WIT column of a declared write. Throws (naming the value) when a value does not fit. */
export function encodeColumn(def, values) {
  const present = values.map((v) => v !== null && v !== undefined);
  const tag = def.type.tag;
  let val;
  switch (tag) {
    case "text":
      val = packVar(values, (s) => {
        if (typeof s !== "string") throw new Error(`${typeName(s)} value for a text column`);
        return encoder.encode(s);
      });
      break;
    case "json":
      val = packVar(values, (s) => encoder.encode(String(s)));
      break;
    case "bytes":
      val = packVar(values, (b) => b);
      break;
    case "decimal": {
      const scale = def.type.val.scale;
      const raw = new Uint8Array(values.length * 16);
      const view = new DataView(raw.buffer);
      values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const u = Decimal.from(v).rescale(scale).unscaled;
        view.setBigUint64(i * 16, BigInt.asUintN(64, u), true);
        view.setBigInt64(i * 16 + 8, BigInt.asIntN(64, u >> 64n), true);
      });
      val = { type: def.type.val, unscaled: raw };
      break;
    }
    case "date":
      val = Int32Array.from(values, (v) => (v == null ? 0 : v instanceof CdcDate ? v.days : v));
      break;
    case "timestamp":
    case "timestamptz":
      val = BigInt64Array.from(values, (v) => (v == null ? 0n : v instanceof Timestamp ? v.micros : BigInt(v)));
      break;
    case "int64":
      val = BigInt64Array.from(values, (v) => (v == null ? 0n : BigInt(v)));
      break;
    case "int32":
      val = Int32Array.from(values, (v) => (v == null ? 0 : Number(v)));
      break;
    case "float64":
      val = Float64Array.from(values, (v) => (v == null ? 0 : Number(v)));
      break;
    case "boolean":
      val = values.map((v) => !!v);
      break;
    default:
      throw new Error(`unknown column type ${tag}`);
  }
  return { name: def.name, present, values: { tag, val } };
}

class Image {
  constructor(columns) {
    this.columns = new Map(columns.map((c) => [c.name, c]));
    this.decoded = new Map();
  }
  values(name) {
    let got = this.decoded.get(name);
    if (got === undefined) {
      const col = this.columns.get(name);
      if (col === undefined) return null;
      got = decodeColumn(col);
      this.decoded.set(name, got);
    }
    return got;
  }
}

/** One change event of a batch, as a row. Reading or setting an undeclared column throws (the event is rejected). */
export class Event {
  constructor(view) {
    this._v = view;
    this.row = 0;
  }
  /** "create", "update", "delete", "read" or "truncate". */
  get op() {
    return this._v.ops[this.row];
  }
  /** Where the event came from: schema, table, lsn, txid, tsMs (bigint), snapshot. */
  get source() {
    const s = this._v.sources[this.row];
    const t = this._v.tables[s.table];
    return { schema: t.schema, table: t.table, lsn: s.lsn, txid: s.txid, tsMs: s.tsMs, snapshot: s.snapshot };
  }
  /** The after-image value of `name` (`null` when null or absent). */
  get(name) {
    const v = this._v;
    if (!v.readsAll && !v.reads.has(name)) throw new Error(`column \`${name}\` is not declared in reads`);
    const vals = v.after.values(name);
    return vals === null ? null : vals[this.row];
  }
  /** The text of `name`; `null` when null, absent or not text. */
  text(name) {
    const x = this.get(name);
    return typeof x === "string" ? x : null;
  }
  /** The before-image value of `name` (needs `readsBefore: true`). */
  before(name) {
    const v = this._v;
    if (!v.readsBefore) throw new Error(`before image of \`${name}\` read, but readsBefore is not declared`);
    if (!v.readsAll && !v.reads.has(name)) throw new Error(`column \`${name}\` is not declared in reads`);
    const vals = v.before.values(name);
    return vals === null ? null : vals[this.row];
  }
  /** Sets the declared write column `name` for this event (`null` for null). */
  set(name, value) {
    const col = this._v.writes.get(name);
    if (col === undefined) throw new Error(`column \`${name}\` is not declared in writes`);
    col[this.row] = value;
  }
}

function witOutcome(o) {
  if (o === undefined || o === null || o === Keep || o.kind === "keep") return { tag: "keep" };
  if (o === Drop || o.kind === "drop") return { tag: "drop" };
  if (o.kind === "reject") return { tag: "reject", val: o.reason };
  return { tag: "reject", val: `apply returned ${String(o)}, not an outcome` };
}

/** A checked description with defaults filled in. */
export function description(d) {
  return {
    name: d.name,
    version: d.version,
    reads: d.reads ?? [],
    readsBefore: !!d.readsBefore,
    writes: (d.writes ?? []).map((w) => ({ name: w.name, type: w.type, doc: w.doc ?? undefined })),
    removes: d.removes ?? [],
  };
}

/**
 * Runs `transform` over one WIT batch: one outcome per event, one column per declared write. An
 * exception in `apply` rejects that event with its message; a value that does not fit its column
 * rejects the event that set it.
 */
export function processBatch(transform, desc, batch) {
  const n = batch.ops.length;
  const view = {
    ops: batch.ops,
    sources: batch.sources,
    tables: batch.tables,
    readsAll: desc.reads.includes("*"),
    reads: new Set(desc.reads),
    readsBefore: desc.readsBefore,
    after: new Image(batch.after),
    before: new Image(batch.before),
    writes: new Map(desc.writes.map((w) => [w.name, new Array(n).fill(null)])),
  };
  const event = new Event(view);
  const outcomes = new Array(n);
  for (let row = 0; row < n; row++) {
    event.row = row;
    try {
      outcomes[row] = witOutcome(transform.apply(event));
    } catch (e) {
      outcomes[row] = { tag: "reject", val: String(e && e.message ? e.message : e) };
      for (const col of view.writes.values()) col[row] = null;
    }
  }
  const writes = desc.writes.map((w) => {
    const values = view.writes.get(w.name);
    try {
      return encodeColumn(w, values);
    } catch {
      values.forEach((v, row) => {
        if (v === null || v === undefined) return;
        try {
          encodeColumn(w, [v]);
        } catch (e) {
          outcomes[row] = { tag: "reject", val: `column \`${w.name}\`: ${e.message}` };
          values[row] = null;
        }
      });
      return encodeColumn(w, values);
    }
  });
  return { outcomes, writes };
}

/**
 * The `transformer` export for a transform class: `export const transformer = exportTransform(MyTransform)`.
 * `describe` calls `Class.describe()`; `configure` builds the instance with `Class.configure(config)`
 * (or `new Class()`), a thrown error becoming the configure error; `process` runs the batch loop.
 * Before a successful `configure` every event is rejected.
 */
export function exportTransform(Class) {
  let instance = null;
  let desc = null;
  return {
    describe() {
      return description(Class.describe());
    },
    configure(pairs) {
      instance = null;
      desc = description(Class.describe());
      const config = new Config(pairs);
      try {
        instance = Class.configure ? Class.configure(config) : new Class(config);
      } catch (e) {
        // componentize-js turns a thrown value into the `err` of result<_, string>
        throw String(e && e.message ? e.message : e);
      }
    },
    process(batch) {
      if (instance === null) {
        const d = description(Class.describe());
        const n = batch.ops.length;
        return {
          outcomes: Array.from({ length: n }, () => ({
            tag: "reject",
            val: "plugin is not configured: configure did not succeed",
          })),
          writes: d.writes.map((w) => encodeColumn(w, new Array(n).fill(null))),
        };
      }
      return processBatch(instance, desc, batch);
    },
  };
}
