/*
 * cdc_transform.c: the batch loop and value handling of the C SDK (see cdc_transform.h). Compiled
 * together with the bindings `wit-bindgen c wit --world transform` generates (transform.h/.c).
 */
#include "cdc_transform.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"

typedef cdc_transform_types_column_t wit_column;
typedef cdc_transform_types_batch_t wit_batch;

/* ---- small helpers ---- */

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) abort();
    return p;
}

static char *vformat(const char *format, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (n < 0) n = 0;
    char *s = xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, format, ap);
    return s;
}

static char *format(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    return s;
}

static void wit_string_own(transform_string_t *dst, const char *s, size_t len) {
    dst->ptr = xmalloc(len);
    memcpy(dst->ptr, s, len);
    dst->len = len;
}

static bool name_is(const transform_string_t *s, const char *name, size_t len) {
    return s->len == len && memcmp(s->ptr, name, len) == 0;
}

/* ---- outcomes ---- */

cdc_outcome cdc_keep(void) { return (cdc_outcome){CDC_KEEP, NULL}; }

cdc_outcome cdc_drop(void) { return (cdc_outcome){CDC_DROP, NULL}; }

cdc_outcome cdc_reject(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *reason = vformat(fmt, ap);
    va_end(ap);
    return (cdc_outcome){CDC_REJECT, reason};
}

/* ---- values ---- */

cdc_value cdc_null(void) {
    cdc_value v;
    memset(&v, 0, sizeof v);
    v.type = CDC_NULL;
    return v;
}

cdc_value cdc_text(const char *ptr, size_t len) {
    cdc_value v = cdc_null();
    v.type = CDC_TEXT;
    v.v.str = (cdc_str){ptr, len};
    return v;
}

const char *cdc_type_name(cdc_type t) {
    static const char *names[] = {"boolean", "int32",     "int64",       "float64", "text", "bytes",
                                  "decimal", "date",      "timestamp",   "timestamptz", "json", "null"};
    return (unsigned)t <= CDC_NULL ? names[t] : "unknown";
}

char *cdc_decimal_format(cdc_decimal d, char *buf) {
    char digits[48];
    int n = 0;
    unsigned __int128 u = d.unscaled < 0 ? -(unsigned __int128)d.unscaled : (unsigned __int128)d.unscaled;
    do {
        digits[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    char *p = buf;
    if (d.unscaled < 0) *p++ = '-';
    int scale = d.scale;
    if (n > scale) {
        for (int i = n - 1; i >= 0; i--) {
            *p++ = digits[i];
            if (i == scale && scale > 0) *p++ = '.';
        }
    } else {
        *p++ = '0';
        *p++ = '.';
        for (int i = 0; i < scale - n; i++) *p++ = '0';
        for (int i = n - 1; i >= 0; i--) *p++ = digits[i];
    }
    *p = 0;
    return buf;
}

bool cdc_decimal_parse(const char *ptr, size_t len, cdc_decimal *out) {
    cdc_str t = cdc_trim((cdc_str){ptr, len});
    const char *s = t.ptr, *end = t.ptr + t.len;
    bool neg = false;
    if (s < end && (*s == '-' || *s == '+')) neg = *s++ == '-';
    __int128 v = 0;
    int digits = 0, scale = 0;
    bool dot = false;
    const __int128 limit = (((__int128)1) << 126) / 5; /* stays clear of i128 overflow */
    for (; s < end; s++) {
        if (*s == '.' && !dot) {
            dot = true;
            continue;
        }
        if (*s < '0' || *s > '9') return false;
        if (v > limit) return false;
        v = v * 10 + (*s - '0');
        digits++;
        if (dot) scale++;
    }
    if (digits == 0 || scale > 255) return false;
    out->unscaled = neg ? -v : v;
    out->scale = (uint8_t)scale;
    out->precision = (uint8_t)(digits > 38 ? 38 : digits);
    return true;
}

int cdc_decimal_cmp(cdc_decimal a, cdc_decimal b) {
    __int128 x = a.unscaled, y = b.unscaled;
    for (int s = a.scale; s < b.scale; s++) x *= 10;
    for (int s = b.scale; s < a.scale; s++) y *= 10;
    return x < y ? -1 : x > y ? 1 : 0;
}

double cdc_decimal_to_f64(cdc_decimal d) {
    double v = (double)d.unscaled;
    for (int i = 0; i < d.scale; i++) v /= 10.0;
    return v;
}

/* Byte length of the whitespace character (Rust's char::is_whitespace) starting at `p`, or 0. */
static size_t ws_at(const unsigned char *p, size_t left) {
    if (left >= 1 && (p[0] == ' ' || (p[0] >= 0x09 && p[0] <= 0x0d))) return 1;
    if (left >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0)) return 2;
    if (left >= 3 && p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80) return 3;
    if (left >= 3 && p[0] == 0xe2 && p[1] == 0x80 &&
        ((p[2] >= 0x80 && p[2] <= 0x8a) || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf))
        return 3;
    if (left >= 3 && p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) return 3;
    if (left >= 3 && p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80) return 3;
    return 0;
}

cdc_str cdc_trim(cdc_str s) {
    const unsigned char *b = (const unsigned char *)s.ptr;
    size_t start = 0, end = s.len, w;
    while (start < end && (w = ws_at(b + start, end - start)) > 0) start += w;
    while (end > start) {
        size_t c = end - 1;
        while (c > start && (b[c] & 0xc0) == 0x80) c--;
        if (ws_at(b + c, end - c) != end - c) break;
        end = c;
    }
    return (cdc_str){s.ptr + start, end - start};
}

char *cdc_format_value(cdc_value v) {
    char buf[64];
    switch (v.type) {
    case CDC_NULL: return format("null");
    case CDC_BOOLEAN: return format("%s", v.v.boolean ? "true" : "false");
    case CDC_INT32: return format("%d", (int)v.v.int32);
    case CDC_INT64: return format("%lld", (long long)v.v.int64);
    case CDC_FLOAT64: {
        double f = v.v.float64;
        if (f == (double)(long long)f && f > -1e16 && f < 1e16) return format("%lld", (long long)f);
        return format("%.17g", f);
    }
    case CDC_TEXT:
    case CDC_JSON: return format("%.*s", (int)v.v.str.len, v.v.str.ptr);
    case CDC_BYTES: {
        char *s = xmalloc(3 + 2 * v.v.str.len);
        strcpy(s, "0x");
        for (size_t i = 0; i < v.v.str.len; i++) sprintf(s + 2 + 2 * i, "%02x", (unsigned char)v.v.str.ptr[i]);
        return s;
    }
    case CDC_DECIMAL: return format("%s", cdc_decimal_format(v.v.decimal, buf));
    case CDC_DATE: return format("date(%d)", (int)v.v.days);
    case CDC_TIMESTAMP: return format("timestamp(%lld)", (long long)v.v.micros);
    case CDC_TIMESTAMPTZ: return format("timestamptz(%lld)", (long long)v.v.micros);
    }
    return format("?");
}

/* ---- configuration ---- */

struct cdc_config {
    size_t len;
    char **keys;
    char **values;
};

const char *cdc_config_get(const cdc_config *c, const char *key) {
    for (size_t i = 0; i < c->len; i++)
        if (strcmp(c->keys[i], key) == 0) return c->values[i];
    return NULL;
}

static bool lower_eq(const char *s, size_t len, const char *word) {
    size_t n = strlen(word);
    if (len != n) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        if (ch != word[i]) return false;
    }
    return true;
}

char *cdc_config_flag(const cdc_config *c, const char *key, bool fallback, bool *out) {
    const char *raw = cdc_config_get(c, key);
    if (!raw) {
        *out = fallback;
        return NULL;
    }
    cdc_str t = cdc_trim((cdc_str){raw, strlen(raw)});
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (lower_eq(t.ptr, t.len, yes[i])) return (*out = true), NULL;
        if (lower_eq(t.ptr, t.len, no[i])) return (*out = false), NULL;
    }
    return format("config key `%s`: invalid value `%s`: expected true or false", key, raw);
}

char *cdc_config_decimal(const cdc_config *c, const char *key, cdc_decimal fallback, cdc_decimal *out) {
    const char *raw = cdc_config_get(c, key);
    if (!raw) {
        *out = fallback;
        return NULL;
    }
    if (!cdc_decimal_parse(raw, strlen(raw), out))
        return format("config key `%s`: invalid value `%s`: not a decimal", key, raw);
    return NULL;
}

/* ---- log ---- */

void cdc_log(cdc_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    transform_string_t s = {(uint8_t *)msg, strlen(msg)};
    cdc_transform_log_write((cdc_transform_log_level_t)level, &s);
    free(msg);
}

/* ---- write columns ---- */

typedef struct writer {
    const cdc_column_def *def;
    size_t name_len;
    bool *present;
    /* text, bytes, json */
    uint32_t *offsets;
    uint8_t *data;
    size_t data_len, data_cap;
    /* fixed width */
    uint8_t *fixed;
    size_t width;
} writer;

static size_t width_of(cdc_type t) {
    switch (t) {
    case CDC_BOOLEAN: return sizeof(bool);
    case CDC_INT32:
    case CDC_DATE: return 4;
    case CDC_DECIMAL: return 16;
    case CDC_TEXT:
    case CDC_BYTES:
    case CDC_JSON: return 0;
    default: return 8;
    }
}

static void writer_init(writer *w, const cdc_column_def *def, size_t n) {
    memset(w, 0, sizeof *w);
    w->def = def;
    w->name_len = strlen(def->name);
    w->present = xcalloc(n, sizeof(bool));
    w->width = width_of(def->type);
    if (w->width == 0) {
        w->offsets = xcalloc(n + 1, sizeof(uint32_t));
        w->data_cap = 16 * n + 64;
        w->data = xmalloc(w->data_cap);
    } else {
        w->fixed = xcalloc(n, w->width);
    }
}

static void writer_bytes(writer *w, size_t row, const void *p, size_t len) {
    w->data_len = w->offsets[row];
    if (w->data_len + len > w->data_cap) {
        while (w->data_len + len > w->data_cap) w->data_cap *= 2;
        w->data = realloc(w->data, w->data_cap);
        if (!w->data) abort();
    }
    memcpy(w->data + w->data_len, p, len);
    w->data_len += len;
    w->present[row] = true;
}

static void writer_clear(writer *w, size_t row) {
    w->present[row] = false;
    if (w->width == 0) w->data_len = w->offsets[row];
}

static void writer_end_row(writer *w, size_t row) {
    if (w->width == 0) w->offsets[row + 1] = (uint32_t)w->data_len;
}

/* Moves the writer's buffers into a WIT column (freed by the bindings' post-return). */
static void writer_finish(writer *w, size_t n, wit_column *out) {
    wit_string_own(&out->name, w->def->name, w->name_len);
    out->present = (transform_list_bool_t){w->present, n};
    cdc_transform_types_column_values_t *v = &out->values;
    v->tag = (uint8_t)w->def->type;
    cdc_transform_types_var_array_t var = {{w->offsets, n + 1}, {w->data, w->data_len}};
    switch (w->def->type) {
    case CDC_TEXT: v->val.text = var; break;
    case CDC_BYTES: v->val.bytes = var; break;
    case CDC_JSON: v->val.json = var; break;
    case CDC_BOOLEAN: v->val.boolean = (transform_list_bool_t){(bool *)w->fixed, n}; break;
    case CDC_INT32: v->val.int32 = (transform_list_s32_t){(int32_t *)w->fixed, n}; break;
    case CDC_DATE: v->val.date = (transform_list_s32_t){(int32_t *)w->fixed, n}; break;
    case CDC_INT64: v->val.int64 = (transform_list_s64_t){(int64_t *)w->fixed, n}; break;
    case CDC_TIMESTAMP: v->val.timestamp = (transform_list_s64_t){(int64_t *)w->fixed, n}; break;
    case CDC_TIMESTAMPTZ: v->val.timestamptz = (transform_list_s64_t){(int64_t *)w->fixed, n}; break;
    case CDC_FLOAT64: v->val.float64 = (transform_list_f64_t){(double *)w->fixed, n}; break;
    case CDC_DECIMAL:
        v->val.decimal.type = (cdc_transform_types_decimal_type_t){w->def->precision, w->def->scale};
        v->val.decimal.unscaled = (transform_list_u8_t){w->fixed, 16 * n};
        break;
    default: break;
    }
}

/* ---- events ---- */

struct cdc_event {
    wit_batch *batch;
    const cdc_description *desc;
    bool reads_all;
    writer *writers;
    size_t row;
    char *error; /* first mistake of this row (malloc'ed) */
};

static void event_error(cdc_event *e, char *message) {
    if (e->error)
        free(message);
    else
        e->error = message;
}

cdc_op cdc_event_op(const cdc_event *e) { return (cdc_op)e->batch->ops.ptr[e->row]; }

cdc_source cdc_event_source(const cdc_event *e) {
    const cdc_transform_types_source_info_t *s = &e->batch->sources.ptr[e->row];
    cdc_source out = {{"", 0}, {"", 0}, s->lsn.is_some, s->lsn.val, s->txid.is_some, s->txid.val, s->ts_ms, s->snapshot};
    if (s->table < e->batch->tables.len) {
        const cdc_transform_types_table_ref_t *t = &e->batch->tables.ptr[s->table];
        out.schema = (cdc_str){(const char *)t->schema.ptr, t->schema.len};
        out.table = (cdc_str){(const char *)t->table.ptr, t->table.len};
    }
    return out;
}

static bool declared_read(const cdc_event *e, const char *name) {
    if (e->reads_all) return true;
    for (size_t i = 0; i < e->desc->reads_len; i++)
        if (strcmp(e->desc->reads[i], name) == 0) return true;
    return false;
}

static cdc_value column_value(const wit_column *c, size_t row) {
    cdc_value v = cdc_null();
    if (!c->present.ptr[row]) return v;
    const cdc_transform_types_column_values_t *cv = &c->values;
    v.type = (cdc_type)cv->tag;
    const cdc_transform_types_var_array_t *var = NULL;
    switch (cv->tag) {
    case CDC_BOOLEAN: v.v.boolean = cv->val.boolean.ptr[row]; break;
    case CDC_INT32: v.v.int32 = cv->val.int32.ptr[row]; break;
    case CDC_INT64: v.v.int64 = cv->val.int64.ptr[row]; break;
    case CDC_FLOAT64: v.v.float64 = cv->val.float64.ptr[row]; break;
    case CDC_DATE: v.v.days = cv->val.date.ptr[row]; break;
    case CDC_TIMESTAMP: v.v.micros = cv->val.timestamp.ptr[row]; break;
    case CDC_TIMESTAMPTZ: v.v.micros = cv->val.timestamptz.ptr[row]; break;
    case CDC_TEXT: var = &cv->val.text; break;
    case CDC_BYTES: var = &cv->val.bytes; break;
    case CDC_JSON: var = &cv->val.json; break;
    case CDC_DECIMAL:
        memcpy(&v.v.decimal.unscaled, cv->val.decimal.unscaled.ptr + 16 * row, 16);
        v.v.decimal.precision = cv->val.decimal.type.precision;
        v.v.decimal.scale = cv->val.decimal.type.scale;
        break;
    default: return cdc_null();
    }
    if (var) {
        uint32_t a = var->offsets.ptr[row], b = var->offsets.ptr[row + 1];
        v.v.str = (cdc_str){(const char *)var->data.ptr + a, b - a};
    }
    return v;
}

static cdc_value image_get(cdc_event *e, const cdc_transform_types_list_column_t *cols, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 0; i < cols->len; i++)
        if (name_is(&cols->ptr[i].name, name, len)) return column_value(&cols->ptr[i], e->row);
    if (!declared_read(e, name)) event_error(e, format("column `%s` is not declared in reads", name));
    return cdc_null();
}

cdc_value cdc_event_get(cdc_event *e, const char *name) { return image_get(e, &e->batch->after, name); }

cdc_value cdc_event_before(cdc_event *e, const char *name) {
    if (!e->desc->reads_before) {
        event_error(e, format("before image of `%s` read, but reads_before is not declared", name));
        return cdc_null();
    }
    return image_get(e, &e->batch->before, name);
}

bool cdc_event_text(cdc_event *e, const char *name, cdc_str *out) {
    cdc_value v = cdc_event_get(e, name);
    if (v.type != CDC_TEXT) return false;
    *out = v.v.str;
    return true;
}

static writer *find_writer(cdc_event *e, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 0; i < e->desc->writes_len; i++) {
        writer *w = &e->writers[i];
        if (w->name_len == len && memcmp(w->def->name, name, len) == 0) return w;
    }
    event_error(e, format("column `%s` is not declared in writes", name));
    return NULL;
}

void cdc_event_set(cdc_event *e, const char *name, cdc_value v) {
    writer *w = find_writer(e, name);
    if (!w) return;
    if (v.type == CDC_NULL) {
        writer_clear(w, e->row);
        return;
    }
    cdc_type want = w->def->type;
    if (want == CDC_DECIMAL && (v.type == CDC_INT32 || v.type == CDC_INT64)) {
        cdc_decimal d = {v.type == CDC_INT32 ? v.v.int32 : v.v.int64, 38, 0};
        v.type = CDC_DECIMAL;
        v.v.decimal = d;
    }
    if (v.type != want) {
        event_error(e, format("column `%s` is declared %s, set to a %s value", name, cdc_type_name(want),
                              cdc_type_name(v.type)));
        return;
    }
    size_t row = e->row;
    switch (want) {
    case CDC_TEXT:
    case CDC_BYTES:
    case CDC_JSON: writer_bytes(w, row, v.v.str.ptr, v.v.str.len); return;
    case CDC_BOOLEAN: ((bool *)w->fixed)[row] = v.v.boolean; break;
    case CDC_INT32: ((int32_t *)w->fixed)[row] = v.v.int32; break;
    case CDC_DATE: ((int32_t *)w->fixed)[row] = v.v.days; break;
    case CDC_INT64: ((int64_t *)w->fixed)[row] = v.v.int64; break;
    case CDC_TIMESTAMP:
    case CDC_TIMESTAMPTZ: ((int64_t *)w->fixed)[row] = v.v.micros; break;
    case CDC_FLOAT64: ((double *)w->fixed)[row] = v.v.float64; break;
    case CDC_DECIMAL: {
        cdc_decimal d = v.v.decimal;
        for (; d.scale < w->def->scale; d.scale++) d.unscaled *= 10;
        for (; d.scale > w->def->scale; d.scale--) {
            if (d.unscaled % 10 != 0) {
                char buf[48];
                event_error(e, format("column `%s`: %s has more than %d fractional digits", name,
                                      cdc_decimal_format(v.v.decimal, buf), w->def->scale));
                return;
            }
            d.unscaled /= 10;
        }
        memcpy(w->fixed + 16 * row, &d.unscaled, 16);
        break;
    }
    default: break;
    }
    w->present[row] = true;
}

void cdc_event_set_text(cdc_event *e, const char *name, const char *ptr, size_t len) {
    cdc_event_set(e, name, cdc_text(ptr, len));
}

void cdc_event_set_joined(cdc_event *e, const char *name, const cdc_str *parts, size_t n, cdc_str sep) {
    writer *w = find_writer(e, name);
    if (!w) return;
    if (w->def->type != CDC_TEXT) {
        event_error(e, format("column `%s` is declared %s, set to a text value", name, cdc_type_name(w->def->type)));
        return;
    }
    writer_clear(w, e->row);
    if (n == 0) return;
    writer_bytes(w, e->row, parts[0].ptr, parts[0].len);
    for (size_t i = 1; i < n; i++) {
        size_t at = w->data_len;
        size_t need = at + sep.len + parts[i].len;
        if (need > w->data_cap) {
            while (need > w->data_cap) w->data_cap *= 2;
            w->data = realloc(w->data, w->data_cap);
            if (!w->data) abort();
        }
        memcpy(w->data + at, sep.ptr, sep.len);
        memcpy(w->data + at + sep.len, parts[i].ptr, parts[i].len);
        w->data_len = need;
    }
}

/* ---- the exports ---- */

static bool configured;

static void set_outcome(cdc_transform_types_outcome_t *o, int kind, char *reason) {
    o->tag = (uint8_t)kind;
    if (kind == CDC_TRANSFORM_TYPES_OUTCOME_REJECT) {
        o->val.reject.ptr = (uint8_t *)reason;
        o->val.reject.len = strlen(reason);
    }
}

void exports_cdc_transform_transformer_describe(exports_cdc_transform_transformer_description_t *ret) {
    const cdc_description *d = cdc_plugin_describe();
    transform_string_dup(&ret->name, d->name);
    transform_string_dup(&ret->version, d->version);
    ret->reads.len = d->reads_len;
    ret->reads.ptr = xcalloc(d->reads_len, sizeof(transform_string_t));
    for (size_t i = 0; i < d->reads_len; i++) transform_string_dup(&ret->reads.ptr[i], d->reads[i]);
    ret->reads_before = d->reads_before;
    ret->writes.len = d->writes_len;
    ret->writes.ptr = xcalloc(d->writes_len, sizeof(cdc_transform_types_column_def_t));
    for (size_t i = 0; i < d->writes_len; i++) {
        cdc_transform_types_column_def_t *c = &ret->writes.ptr[i];
        transform_string_dup(&c->name, d->writes[i].name);
        c->type.tag = (uint8_t)d->writes[i].type;
        c->type.val.decimal = (cdc_transform_types_decimal_type_t){d->writes[i].precision, d->writes[i].scale};
        c->doc.is_some = d->writes[i].doc != NULL;
        if (c->doc.is_some) transform_string_dup(&c->doc.val, d->writes[i].doc);
    }
    ret->removes.len = d->removes_len;
    ret->removes.ptr = xcalloc(d->removes_len, sizeof(transform_string_t));
    for (size_t i = 0; i < d->removes_len; i++) transform_string_dup(&ret->removes.ptr[i], d->removes[i]);
}

static char *dup_n(const uint8_t *p, size_t n) {
    char *s = xmalloc(n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

bool exports_cdc_transform_transformer_configure(transform_list_tuple2_string_string_t *config,
                                                 transform_string_t *err) {
    cdc_config c = {config->len, xcalloc(config->len, sizeof(char *)), xcalloc(config->len, sizeof(char *))};
    for (size_t i = 0; i < config->len; i++) {
        c.keys[i] = dup_n(config->ptr[i].f0.ptr, config->ptr[i].f0.len);
        c.values[i] = dup_n(config->ptr[i].f1.ptr, config->ptr[i].f1.len);
    }
    transform_list_tuple2_string_string_free(config);
    configured = false;
    char *error = cdc_plugin_configure(&c);
    for (size_t i = 0; i < c.len; i++) {
        free(c.keys[i]);
        free(c.values[i]);
    }
    free(c.keys);
    free(c.values);
    if (error) {
        err->ptr = (uint8_t *)error;
        err->len = strlen(error);
        return false;
    }
    configured = true;
    return true;
}

void exports_cdc_transform_transformer_process(exports_cdc_transform_transformer_batch_t *batch,
                                               exports_cdc_transform_transformer_output_t *ret) {
    const cdc_description *d = cdc_plugin_describe();
    size_t n = batch->ops.len;
    cdc_event e = {batch, d, false, xcalloc(d->writes_len, sizeof(writer)), 0, NULL};
    for (size_t i = 0; i < d->reads_len; i++)
        if (strcmp(d->reads[i], "*") == 0) e.reads_all = true;
    for (size_t i = 0; i < d->writes_len; i++) writer_init(&e.writers[i], &d->writes[i], n);
    ret->outcomes.len = n;
    ret->outcomes.ptr = xcalloc(n, sizeof(cdc_transform_types_outcome_t));
    for (size_t row = 0; row < n; row++) {
        e.row = row;
        e.error = NULL;
        cdc_outcome o;
        if (configured) {
            o = cdc_plugin_apply(&e);
        } else {
            o = cdc_reject("plugin is not configured: configure did not succeed");
        }
        cdc_transform_types_outcome_t *out = &ret->outcomes.ptr[row];
        if (e.error) {
            char *reason = o.kind == CDC_REJECT ? format("%s; %s", e.error, o.reason) : e.error;
            if (reason != e.error) free(e.error);
            free(o.reason);
            set_outcome(out, CDC_TRANSFORM_TYPES_OUTCOME_REJECT, reason);
            for (size_t i = 0; i < d->writes_len; i++) writer_clear(&e.writers[i], row);
        } else if (o.kind == CDC_REJECT) {
            set_outcome(out, CDC_TRANSFORM_TYPES_OUTCOME_REJECT, o.reason);
        } else {
            set_outcome(out, o.kind == CDC_KEEP ? CDC_TRANSFORM_TYPES_OUTCOME_KEEP : CDC_TRANSFORM_TYPES_OUTCOME_DROP,
                        NULL);
        }
        for (size_t i = 0; i < d->writes_len; i++) writer_end_row(&e.writers[i], row);
    }
    ret->writes.len = d->writes_len;
    ret->writes.ptr = xcalloc(d->writes_len, sizeof(wit_column));
    for (size_t i = 0; i < d->writes_len; i++) writer_finish(&e.writers[i], n, &ret->writes.ptr[i]);
    free(e.writers);
    exports_cdc_transform_transformer_batch_free(batch);
}
