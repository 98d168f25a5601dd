/*
 * cdc_transform.h: write cdc-host transforms in C over row-style change events.
 *
 * The host hands a plugin batches of change events column by column (wit/transform.wit, world
 * cdc:transform/transform@0.1.0). This SDK hides that. A plugin defines three functions:
 *
 *   const cdc_description *cdc_plugin_describe(void);      what it reads, writes and removes
 *   char *cdc_plugin_configure(const cdc_config *config);  NULL, or a malloc'ed error message
 *   cdc_outcome cdc_plugin_apply(cdc_event *event);         keep, drop or reject one event
 *
 * and links with cdc_transform.c and the bindings `wit-bindgen c wit --world transform` generates.
 * The SDK resolves columns once per batch, reads text straight from the packed buffers and writes
 * into packed output buffers. Build as a wasm32-wasi reactor and wrap it with
 * `wasm-tools component new --adapt` (see scripts/build-plugins).
 *
 * Values are typed (cdc_value): text and JSON as UTF-8 slices (not NUL-terminated), exact decimals
 * as a 128-bit unscaled value with precision and scale, dates as days, timestamps as microseconds.
 */
#ifndef CDC_TRANSFORM_H
#define CDC_TRANSFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The kind of change an event describes. */
typedef enum cdc_op { CDC_OP_CREATE, CDC_OP_UPDATE, CDC_OP_DELETE, CDC_OP_READ, CDC_OP_TRUNCATE } cdc_op;

/** Value and column types. CDC_NULL is only a value type (a null value). */
typedef enum cdc_type {
    CDC_BOOLEAN,
    CDC_INT32,
    CDC_INT64,
    CDC_FLOAT64,
    CDC_TEXT,
    CDC_BYTES,
    CDC_DECIMAL,
    CDC_DATE,
    CDC_TIMESTAMP,
    CDC_TIMESTAMPTZ,
    CDC_JSON,
    CDC_NULL
} cdc_type;

/** A UTF-8 (or byte) slice; not NUL-terminated. */
typedef struct cdc_str {
    const char *ptr;
    size_t len;
} cdc_str;

/** An exact decimal: unscaled * 10^-scale. */
typedef struct cdc_decimal {
    __int128 unscaled;
    uint8_t precision;
    uint8_t scale;
} cdc_decimal;

/** A typed value. `type` tells which member of `v` is set; CDC_NULL sets none. */
typedef struct cdc_value {
    cdc_type type;
    union {
        bool boolean;
        int32_t int32;
        int64_t int64;
        double float64;
        cdc_str str; /* CDC_TEXT, CDC_BYTES, CDC_JSON */
        cdc_decimal decimal;
        int32_t days;   /* CDC_DATE: days since 1970-01-01 */
        int64_t micros; /* CDC_TIMESTAMP, CDC_TIMESTAMPTZ: microseconds since the epoch */
    } v;
} cdc_value;

/** A column the plugin writes. `precision`/`scale` only for CDC_DECIMAL; `doc` may be NULL. */
typedef struct cdc_column_def {
    const char *name;
    cdc_type type;
    uint8_t precision;
    uint8_t scale;
    const char *doc;
} cdc_column_def;

/** What the plugin is and which columns it reads ("*": all), writes and removes. */
typedef struct cdc_description {
    const char *name;
    const char *version;
    const char *const *reads;
    size_t reads_len;
    bool reads_before;
    const cdc_column_def *writes;
    size_t writes_len;
    const char *const *removes;
    size_t removes_len;
} cdc_description;

/** What happens to one event. Build with cdc_keep(), cdc_drop(), cdc_reject(...). */
typedef struct cdc_outcome {
    enum { CDC_KEEP, CDC_DROP, CDC_REJECT } kind;
    char *reason; /* CDC_REJECT: malloc'ed, owned by the SDK once returned */
} cdc_outcome;

/** Where an event came from. `schema`/`table` point into the batch. */
typedef struct cdc_source {
    cdc_str schema;
    cdc_str table;
    bool has_lsn;
    int64_t lsn;
    bool has_txid;
    int64_t txid;
    int64_t ts_ms;
    bool snapshot;
} cdc_source;

/** One change event of a batch (valid during cdc_plugin_apply only). */
typedef struct cdc_event cdc_event;
/** The plugin's configuration (valid during cdc_plugin_configure only). */
typedef struct cdc_config cdc_config;

/* ---- implemented by the plugin ---- */

/** Describes the plugin; the returned description must stay valid (e.g. static). */
const cdc_description *cdc_plugin_describe(void);
/** Configures the plugin: NULL on success, else a malloc'ed message naming the key and value. */
char *cdc_plugin_configure(const cdc_config *config);
/** Decides what happens to one event, setting declared write columns on the way. */
cdc_outcome cdc_plugin_apply(cdc_event *event);

/* ---- outcomes ---- */

/** Keep the event, with the plugin's writes applied. */
cdc_outcome cdc_keep(void);
/** Filter the event out on purpose (counted, not an error). */
cdc_outcome cdc_drop(void);
/** Refuse the event with a printf-style reason; it goes to the dead-letter table. */
cdc_outcome cdc_reject(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* ---- events ---- */

/** The operation. */
cdc_op cdc_event_op(const cdc_event *event);
/** Where the event came from. */
cdc_source cdc_event_source(const cdc_event *event);
/** The after-image value of `name` (CDC_NULL when null or absent). Reading an undeclared column
 * rejects the event. */
cdc_value cdc_event_get(cdc_event *event, const char *name);
/** The before-image value of `name` (needs reads_before). */
cdc_value cdc_event_before(cdc_event *event, const char *name);
/** The text of `name` into `out`; false when null, absent or not text. */
bool cdc_event_text(cdc_event *event, const char *name, cdc_str *out);
/** Sets declared write column `name` to `value` (CDC_NULL for null). A value of another type than
 * declared, or an undeclared column, rejects the event. */
void cdc_event_set(cdc_event *event, const char *name, cdc_value value);
/** Sets a text write column. */
void cdc_event_set_text(cdc_event *event, const char *name, const char *ptr, size_t len);
/** Sets a text write column to `parts` joined with `sep`; null when there are no parts. */
void cdc_event_set_joined(cdc_event *event, const char *name, const cdc_str *parts, size_t n, cdc_str sep);

/* ---- values ---- */

/** A null value. */
cdc_value cdc_null(void);
/** A text value (not copied: must outlive the call that uses it). */
cdc_value cdc_text(const char *ptr, size_t len);
/** The value's type name ("text", "decimal", "null", ...). */
const char *cdc_type_name(cdc_type type);
/** Formats a value for messages exactly as every cdc-host SDK does; returns a malloc'ed string. */
char *cdc_format_value(cdc_value value);
/** Formats a decimal keeping its scale ("-42.50") into `buf` (at least 48 bytes); returns `buf`. */
char *cdc_decimal_format(cdc_decimal d, char *buf);
/** Parses `[+-]digits[.digits]` (surrounding whitespace allowed) keeping the written scale. */
bool cdc_decimal_parse(const char *ptr, size_t len, cdc_decimal *out);
/** Compares exactly whatever the scales: -1, 0 or 1. */
int cdc_decimal_cmp(cdc_decimal a, cdc_decimal b);
/** The decimal as a float. */
double cdc_decimal_to_f64(cdc_decimal d);
/** `s` without leading and trailing Unicode whitespace (as Rust's str::trim). */
cdc_str cdc_trim(cdc_str s);

/* ---- configuration ---- */

/** The value of `key` as a NUL-terminated string, or NULL when unset. */
const char *cdc_config_get(const cdc_config *config, const char *key);
/** A boolean (true/false, yes/no, on/off, 1/0, any case): NULL on success (`*out` set, `fallback`
 * when unset), else a malloc'ed error message naming the key and value. */
char *cdc_config_flag(const cdc_config *config, const char *key, bool fallback, bool *out);
/** A decimal: NULL on success (`*out` set, `fallback` when unset), else a malloc'ed message. */
char *cdc_config_decimal(const cdc_config *config, const char *key, cdc_decimal fallback, cdc_decimal *out);

/* ---- log ---- */

/** Log levels of the host log. */
typedef enum cdc_log_level { CDC_LOG_TRACE, CDC_LOG_DEBUG, CDC_LOG_INFO, CDC_LOG_WARN, CDC_LOG_ERROR } cdc_log_level;
/** Writes a printf-style line to the host log (configuration and batch-level messages). */
void cdc_log(cdc_log_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
