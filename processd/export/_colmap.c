/* The exporter's hot mapping in C: a ScanEventsResponse page, as processd sent it, straight into the column lists
 * of the exporter's tables (processd/export/colmap.py drives it; docs/export.md#benchmark says why).
 *
 * It knows protobuf's wire format and nothing of mempulse's messages: which field of which message goes into
 * which column, as what, comes from a plan that colmap.py builds from the generated descriptors (field numbers,
 * types, presence) and compiles once with compile_plan(). decode(plan, page) walks the page once and returns
 *
 *     (tables, others)   tables: one list of column lists per table of the plan, the ``events`` table first;
 *                        others: the indexes of the events whose kind has no table in the plan
 *
 * or None when the page holds anything this decoder does not reproduce exactly as the protobuf library reads it
 * (two bodies of different kinds, of which protobuf keeps the last; a body that is not its kind's; a known field
 * with another wire type, which protobuf keeps as an unknown field; a string that is not UTF-8; malformed wire
 * data). A message field given more than once is merged as protobuf merges it, because decoding each occurrence
 * into the same row in wire order is that merge (scalars: the last wins; repeated fields: appended; messages:
 * merged field by field): processd frames a stored opportunity's seq that way, as a second body after the stored
 * one. The caller
 * then maps the page with the protobuf library: this module is a shortcut for the bytes processd writes, never a
 * second opinion on what a page means. Every read is bounds-checked against the page's end.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum {
    T_SKIP = 0,
    T_U64 = 1,           /* varint as an unsigned 64-bit int */
    T_U32 = 2,           /* varint truncated to 32 bits, unsigned (protobuf's uint32) */
    T_I32 = 3,           /* varint truncated to 32 bits, signed (int32, enums) */
    T_I64 = 4,           /* varint as a signed 64-bit int */
    T_BOOL_INT = 5,      /* varint != 0, as the int 0 or 1 (the column's value) */
    T_BYTES = 6,         /* bytes */
    T_BYTES_OR_NONE = 7, /* bytes, None when empty (an absent address: NULL) */
    T_OPT_BYTES = 8,     /* optional bytes: the template's None until set */
    T_STRING = 9,        /* UTF-8 str */
    T_OPT_U64 = 10,      /* optional uint64: the template's None until set */
    T_REP_BYTES = 11,    /* repeated bytes: a list */
    T_REP_STRING = 12,   /* repeated string: a list */
    T_REP_U32 = 13,      /* repeated uint32, packed or not: a list */
    T_MESSAGE = 14,      /* a submessage whose fields go into the same row */
    T_DECIMAL = 15,      /* bytes, a big-endian unsigned int: its decimal digits (str) */
    T_OPT_DECIMAL = 16,  /* optional bytes, the same: the template's None until set */
    T_LAST = 16,
};

#define MAX_FIELD 63
#define MAX_SLOTS 64
#define MAX_TABLES 16
#define HEAD_COLUMNS 6  /* chain_id, seq, tx_hash, first_seen (s), first_seen_ns, received_ns */
#define EVENT_COLUMNS 8 /* the head, kind's name, source_id */
#define NS 1000000000ULL

typedef struct Spec {
    uint8_t type[MAX_FIELD + 1];
    int8_t slot[MAX_FIELD + 1];
    struct Spec *sub[MAX_FIELD + 1];
    struct Spec *next; /* every spec of a plan, for freeing */
} Spec;

typedef struct {
    int kind;
    int body_field;
    Spec *spec;
    int slots;
    int source_slot;    /* the slot that takes the event's own source_id, or -1 */
    PyObject *defaults; /* tuple: the row before any field is read */
} Table;

enum { H_NONE = 0, H_SEQ, H_CHAIN, H_KIND, H_HASH, H_FIRST, H_RECEIVED, H_SOURCE };

typedef struct {
    int events_field;
    int next_seq_field, last_seq_field; /* the page's own varints: ScanEventsResponse.next_seq_id, last_seq_id */
    uint8_t head[MAX_FIELD + 1];    /* Event field number -> H_* */
    uint8_t is_body[MAX_FIELD + 1]; /* Event field number -> 1: a field of the body oneof */
    int8_t table_of_kind[MAX_FIELD + 1];
    int tables;
    Table table[MAX_TABLES];
    PyObject *kind_names; /* tuple: kind value -> name */
    PyObject *unknown_name;
    Spec *specs;
} Plan;

/* ---- the plan ------------------------------------------------------------------------------------------------ */

static void plan_free(Plan *plan) {
    Spec *s = plan->specs;
    while (s != NULL) {
        Spec *next = s->next;
        PyMem_Free(s);
        s = next;
    }
    for (int i = 0; i < plan->tables; i++)
        Py_XDECREF(plan->table[i].defaults);
    Py_XDECREF(plan->kind_names);
    Py_XDECREF(plan->unknown_name);
    PyMem_Free(plan);
}

static void capsule_free(PyObject *capsule) {
    Plan *plan = PyCapsule_GetPointer(capsule, "mempulse.colmap.plan");
    if (plan != NULL)
        plan_free(plan);
}

static int field_number(PyObject *obj, const char *what) {
    long n = PyLong_AsLong(obj);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (n < 1 || n > MAX_FIELD) {
        PyErr_Format(PyExc_ValueError, "%s: field number %ld outside 1..%d", what, n, MAX_FIELD);
        return -1;
    }
    return (int)n;
}

/* spec: a tuple of (field number, type, slot, subspec or None) */
static Spec *compile_spec(Plan *plan, PyObject *spec, int slots) {
    if (!PyTuple_Check(spec)) {
        PyErr_SetString(PyExc_TypeError, "a spec is a tuple");
        return NULL;
    }
    Spec *s = PyMem_Calloc(1, sizeof(Spec));
    if (s == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    s->next = plan->specs;
    plan->specs = s;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(spec); i++) {
        PyObject *item = PyTuple_GET_ITEM(spec, i);
        PyObject *sub_obj;
        int number, type, slot;
        if (!PyArg_ParseTuple(item, "iiiO;a spec item is (number, type, slot, subspec)", &number, &type, &slot,
                              &sub_obj))
            return NULL;
        if (number < 1 || number > MAX_FIELD || type < 1 || type > T_LAST || s->type[number] != T_SKIP) {
            PyErr_Format(PyExc_ValueError, "bad spec item: field %d type %d", number, type);
            return NULL;
        }
        s->type[number] = (uint8_t)type;
        if (type == T_MESSAGE) {
            if ((s->sub[number] = compile_spec(plan, sub_obj, slots)) == NULL)
                return NULL;
        } else if (slot < 0 || slot >= slots) {
            PyErr_Format(PyExc_ValueError, "field %d: slot %d outside the row's %d", number, slot, slots);
            return NULL;
        } else {
            s->slot[number] = (int8_t)slot;
        }
    }
    return s;
}

static int compile_table(Plan *plan, PyObject *item) {
    PyObject *spec, *defaults;
    int kind, body, source_slot;
    if (!PyArg_ParseTuple(item, "iiOO!i;a table is (kind, body field, spec, defaults, source slot)", &kind, &body,
                          &spec, &PyTuple_Type, &defaults, &source_slot))
        return -1;
    Py_ssize_t slots = PyTuple_GET_SIZE(defaults);
    if (kind < 0 || kind > MAX_FIELD || plan->table_of_kind[kind] >= 0 || body < 1 || body > MAX_FIELD ||
        slots > MAX_SLOTS || source_slot < -1 || source_slot >= slots) {
        PyErr_Format(PyExc_ValueError, "bad table: kind %d body %d slots %zd", kind, body, slots);
        return -1;
    }
    Table *t = &plan->table[plan->tables];
    t->kind = kind;
    t->body_field = body;
    t->slots = (int)slots;
    t->source_slot = source_slot;
    Py_INCREF(defaults);
    t->defaults = defaults;
    plan->table_of_kind[kind] = (int8_t)plan->tables;
    plan->tables++;
    return (t->spec = compile_spec(plan, spec, (int)slots)) == NULL ? -1 : 0;
}

/* compile_plan(((events_field, next_seq_field, last_seq_field), (seq, chain, kind, hash, first_seen, received,
 *               source), body_fields, kind_names, unknown_name, tables)) */
static PyObject *compile_plan(PyObject *self, PyObject *args) {
    PyObject *head, *bodies, *names, *unknown, *tables;
    int events_field, next_seq_field, last_seq_field;
    if (!PyArg_ParseTuple(args, "((iii)O!O!O!UO!)", &events_field, &next_seq_field, &last_seq_field, &PyTuple_Type,
                          &head, &PyTuple_Type, &bodies, &PyTuple_Type, &names, &unknown, &PyTuple_Type, &tables))
        return NULL;
    Plan *plan = PyMem_Calloc(1, sizeof(Plan));
    if (plan == NULL)
        return PyErr_NoMemory();
    memset(plan->table_of_kind, -1, sizeof(plan->table_of_kind));
    Py_INCREF(names);
    plan->kind_names = names;
    Py_INCREF(unknown);
    plan->unknown_name = unknown;
    plan->events_field = events_field;
    plan->next_seq_field = next_seq_field;
    plan->last_seq_field = last_seq_field;
    if (events_field < 1 || events_field > MAX_FIELD || PyTuple_GET_SIZE(head) != 7 ||
        PyTuple_GET_SIZE(tables) > MAX_TABLES) {
        PyErr_SetString(PyExc_ValueError, "bad plan");
        goto fail;
    }
    for (int role = H_SEQ; role <= H_SOURCE; role++) {
        int n = field_number(PyTuple_GET_ITEM(head, role - 1), "event head");
        if (n < 0)
            goto fail;
        plan->head[n] = (uint8_t)role;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(bodies); i++) {
        int n = field_number(PyTuple_GET_ITEM(bodies, i), "event body");
        if (n < 0)
            goto fail;
        plan->is_body[n] = 1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tables); i++)
        if (compile_table(plan, PyTuple_GET_ITEM(tables, i)) < 0)
            goto fail;
    PyObject *capsule = PyCapsule_New(plan, "mempulse.colmap.plan", capsule_free);
    if (capsule == NULL)
        goto fail;
    return capsule;
fail:
    plan_free(plan);
    return NULL;
}

/* ---- the wire ------------------------------------------------------------------------------------------------ */

/* 1 and the value, or 0: malformed (past the end, more than 10 bytes) */
static inline int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (p >= end)
            return 0;
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *pp = p;
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* a length-delimited field's bytes: 1 and [*start, *pp), or 0 when its length passes the end */
static inline int read_span(const uint8_t **pp, const uint8_t *end, const uint8_t **start, Py_ssize_t *len) {
    uint64_t n;
    if (!read_varint(pp, end, &n) || n > (uint64_t)(end - *pp))
        return 0;
    *start = *pp;
    *len = (Py_ssize_t)n;
    *pp += n;
    return 1;
}

static inline int skip_field(const uint8_t **pp, const uint8_t *end, int wire_type) {
    uint64_t v;
    const uint8_t *s;
    Py_ssize_t n;
    switch (wire_type) {
    case 0:
        return read_varint(pp, end, &v);
    case 1:
        if (end - *pp < 8)
            return 0;
        *pp += 8;
        return 1;
    case 2:
        return read_span(pp, end, &s, &n);
    case 5:
        if (end - *pp < 4)
            return 0;
        *pp += 4;
        return 1;
    default: /* groups (3, 4) and invalid types: not ours */
        return 0;
    }
}

/* Results of the decoding functions: OK, BAIL (the caller maps the page with protobuf), or ERR (a Python
 * exception is set: out of memory). */
enum { OK = 0, BAIL = 1, ERR = -1 };

static PyObject *utf8(const uint8_t *s, Py_ssize_t n, int *bail) {
    PyObject *str = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    if (str == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear(); /* protobuf refuses such a string: let it say so */
        *bail = 1;
    }
    return str;
}

/* The last value read into each slot of each table, by its bytes: a label or an amount that repeats (a pool's gas
 * prices, a protocol's name) is one object, converted once. The bytes point into the page, alive for the call. */
typedef struct {
    const uint8_t *raw;
    Py_ssize_t len;
    PyObject *obj;
} Memo;

typedef struct {
    PyObject *first_s, *first, *received, *source;
    uint64_t first_s_v, first_v, received_v;
    Memo memo[MAX_TABLES][MAX_SLOTS];
} Ctx;

static void ctx_free(Ctx *c) {
    if (c == NULL)
        return;
    Py_CLEAR(c->first_s);
    Py_CLEAR(c->first);
    Py_CLEAR(c->received);
    Py_CLEAR(c->source);
    for (int t = 0; t < MAX_TABLES; t++)
        for (int i = 0; i < MAX_SLOTS; i++)
            Py_CLEAR(c->memo[t][i].obj);
    PyMem_Free(c);
}

static PyObject *ascii(const char *s, Py_ssize_t n) {
    PyObject *str = PyUnicode_New(n, 127);
    if (str != NULL)
        memcpy(PyUnicode_1BYTE_DATA(str), s, (size_t)n);
    return str;
}

#define MAX_DECIMAL_BYTES 64

/* str(int.from_bytes(s, "big")): a uint64 directly, wider values by repeated division in base 10**9 */
static PyObject *decimal(const uint8_t *s, Py_ssize_t n, int *bail) {
    char buf[4 * MAX_DECIMAL_BYTES];
    char *end = buf + sizeof(buf), *out = end;
    while (n > 0 && *s == 0) {
        s++;
        n--;
    }
    if (n > MAX_DECIMAL_BYTES) {
        *bail = 1;
        return NULL;
    }
    if (n <= 8) {
        uint64_t v = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            v = v << 8 | s[i];
        do {
            *--out = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        return ascii(out, end - out);
    }
    uint32_t limbs[MAX_DECIMAL_BYTES / 4];
    int count = (int)((n + 3) / 4), first = 0;
    for (int i = 0; i < count; i++) { /* big-endian 32-bit limbs, the first one partial */
        uint32_t limb = 0;
        Py_ssize_t from = n - (Py_ssize_t)(count - i) * 4;
        for (Py_ssize_t j = from; j < from + 4; j++)
            limb = limb << 8 | (j >= 0 ? s[j] : 0);
        limbs[i] = limb;
    }
    while (first < count) {
        uint64_t rem = 0;
        for (int i = first; i < count; i++) {
            uint64_t cur = rem << 32 | limbs[i];
            limbs[i] = (uint32_t)(cur / 1000000000u);
            rem = cur % 1000000000u;
        }
        while (first < count && limbs[first] == 0)
            first++;
        for (int d = 0; d < 9 && (first < count || rem); d++) { /* 9 digits, the last chunk unpadded */
            *--out = (char)('0' + rem % 10);
            rem /= 10;
        }
    }
    return ascii(out, end - out);
}

/* The memo's object when ``s`` repeats the slot's last bytes, else a new one (``make``), remembered. */
static PyObject *memoized(Memo *m, const uint8_t *s, Py_ssize_t n, int type, int *bail) {
    if (m->obj != NULL && m->len == n && memcmp(m->raw, s, (size_t)n) == 0)
        return Py_NewRef(m->obj);
    PyObject *obj = type == T_STRING || type == T_REP_STRING ? utf8(s, n, bail) : decimal(s, n, bail);
    if (obj != NULL) {
        Py_XSETREF(m->obj, Py_NewRef(obj));
        m->raw = s;
        m->len = n;
    }
    return obj;
}

static inline int set_slot(PyObject **row, int slot, PyObject *value) {
    if (value == NULL)
        return ERR;
    Py_SETREF(row[slot], value);
    return OK;
}

static int decode_varint_field(int type, uint64_t v, PyObject **row, int slot) {
    switch (type) {
    case T_U64:
    case T_OPT_U64:
        return set_slot(row, slot, PyLong_FromUnsignedLongLong(v));
    case T_U32:
        return set_slot(row, slot, PyLong_FromUnsignedLong((uint32_t)v));
    case T_I32:
        return set_slot(row, slot, PyLong_FromLong((int32_t)(uint32_t)v));
    case T_I64:
        return set_slot(row, slot, PyLong_FromLongLong((int64_t)v));
    case T_BOOL_INT:
        return set_slot(row, slot, PyLong_FromLong(v != 0));
    default:
        return BAIL;
    }
}


static int append_new(PyObject *list, PyObject *value) {
    if (value == NULL)
        return ERR;
    int rc = PyList_Append(list, value);
    Py_DECREF(value);
    return rc < 0 ? ERR : OK;
}

static int decode_length_field(int type, const uint8_t *s, Py_ssize_t n, PyObject **row, int slot, Memo *memo) {
    int bail = 0;
    PyObject *value;
    switch (type) {
    case T_DECIMAL:
    case T_OPT_DECIMAL:
        value = memoized(&memo[slot], s, n, type, &bail);
        return bail ? BAIL : set_slot(row, slot, value);
    case T_BYTES:
    case T_OPT_BYTES:
        return set_slot(row, slot, PyBytes_FromStringAndSize((const char *)s, n));
    case T_BYTES_OR_NONE:
        if (n == 0) {
            Py_INCREF(Py_None);
            return set_slot(row, slot, Py_None);
        }
        return set_slot(row, slot, PyBytes_FromStringAndSize((const char *)s, n));
    case T_STRING:
        value = memoized(&memo[slot], s, n, type, &bail);
        return bail ? BAIL : set_slot(row, slot, value);
    case T_REP_BYTES:
        return append_new(row[slot], PyBytes_FromStringAndSize((const char *)s, n));
    case T_REP_STRING:
        value = utf8(s, n, &bail);
        return bail ? BAIL : append_new(row[slot], value);
    case T_REP_U32: { /* packed */
        const uint8_t *p = s, *end = s + n;
        uint64_t v;
        while (p < end) {
            if (!read_varint(&p, end, &v))
                return BAIL;
            if (append_new(row[slot], PyLong_FromUnsignedLong((uint32_t)v)) != OK)
                return ERR;
        }
        return OK;
    }
    default:
        return BAIL;
    }
}

static int decode_message(const Spec *spec, const uint8_t *p, const uint8_t *end, PyObject **row, Memo *memo) {
    while (p < end) {
        uint64_t tag, v;
        if (!read_varint(&p, end, &tag))
            return BAIL;
        uint64_t number = tag >> 3;
        int wire_type = (int)(tag & 7);
        if (number == 0)
            return BAIL;
        int type = number <= MAX_FIELD ? spec->type[number] : T_SKIP;
        int rc;
        if (type == T_SKIP) {
            if (!skip_field(&p, end, wire_type))
                return BAIL;
            continue;
        }
        if (wire_type == 0 && (type <= T_BOOL_INT || type == T_OPT_U64)) {
            if (!read_varint(&p, end, &v))
                return BAIL;
            rc = decode_varint_field(type, v, row, spec->slot[number]);
        } else if (wire_type == 0 && type == T_REP_U32) { /* one unpacked element */
            if (!read_varint(&p, end, &v))
                return BAIL;
            rc = append_new(row[spec->slot[number]], PyLong_FromUnsignedLong((uint32_t)v));
        } else if (wire_type == 2 && type == T_MESSAGE) {
            const uint8_t *s;
            Py_ssize_t n;
            if (!read_span(&p, end, &s, &n))
                return BAIL;
            rc = decode_message(spec->sub[number], s, s + n, row, memo);
        } else if (wire_type == 2 && type >= T_BYTES && type != T_OPT_U64 && type != T_MESSAGE) {
            const uint8_t *s;
            Py_ssize_t n;
            if (!read_span(&p, end, &s, &n))
                return BAIL;
            rc = decode_length_field(type, s, n, row, spec->slot[number], memo);
        } else {
            return BAIL; /* a known field with another wire type: protobuf keeps it as unknown */
        }
        if (rc != OK)
            return rc;
    }
    return OK;
}

/* ---- events into columns ------------------------------------------------------------------------------------- */

#define MAX_BODIES 4 /* occurrences of the body field in one event (processd writes one or two) */

typedef struct {
    uint64_t seq, chain, first, received;
    int32_t kind;
    const uint8_t *hash, *source, *body[MAX_BODIES];
    Py_ssize_t hash_len, source_len, body_len[MAX_BODIES];
    int body_field, bodies;
} EventHead;

static int read_head(const Plan *plan, const uint8_t *p, const uint8_t *end, EventHead *h) {
    memset(h, 0, sizeof(*h));
    h->hash = h->source = p;
    while (p < end) {
        uint64_t tag, v;
        if (!read_varint(&p, end, &tag))
            return BAIL;
        uint64_t number = tag >> 3;
        int wire_type = (int)(tag & 7);
        if (number == 0)
            return BAIL;
        int role = number <= MAX_FIELD ? plan->head[number] : H_NONE;
        if (role == H_NONE && number <= MAX_FIELD && plan->is_body[number]) {
            /* the same body again is merged; another one replaces it (a oneof): not reproduced here */
            if (wire_type != 2 || (h->body_field != 0 && h->body_field != (int)number) || h->bodies == MAX_BODIES ||
                !read_span(&p, end, &h->body[h->bodies], &h->body_len[h->bodies]))
                return BAIL;
            h->body_field = (int)number;
            h->bodies++;
        } else if (role == H_NONE) {
            if (!skip_field(&p, end, wire_type))
                return BAIL;
        } else if (role == H_HASH || role == H_SOURCE) {
            if (wire_type != 2)
                return BAIL;
            if (!read_span(&p, end, role == H_HASH ? &h->hash : &h->source,
                           role == H_HASH ? &h->hash_len : &h->source_len))
                return BAIL;
        } else {
            if (wire_type != 0 || !read_varint(&p, end, &v))
                return BAIL;
            switch (role) {
            case H_SEQ: h->seq = v; break;
            case H_CHAIN: h->chain = v; break;
            case H_KIND: h->kind = (int32_t)(uint32_t)v; break;
            case H_FIRST: h->first = v; break;
            default: h->received = v; break;
            }
        }
    }
    return OK;
}

static PyObject *reused_int(PyObject **cache, uint64_t *cached, uint64_t value) {
    if (*cache == NULL || *cached != value) {
        PyObject *obj = PyLong_FromUnsignedLongLong(value);
        if (obj == NULL)
            return NULL;
        Py_XSETREF(*cache, obj);
        *cached = value;
    }
    Py_INCREF(*cache);
    return *cache;
}

/* The head's objects: chain_id, seq, tx_hash, first_seen (s), first_seen_ns, received_ns, kind's name, source. */
static int head_objects(const Plan *plan, const EventHead *h, Ctx *r, PyObject **out) {
    out[0] = PyLong_FromUnsignedLongLong(h->chain);
    out[1] = PyLong_FromUnsignedLongLong(h->seq);
    out[2] = PyBytes_FromStringAndSize((const char *)h->hash, h->hash_len);
    out[4] = reused_int(&r->first, &r->first_v, h->first);
    out[3] = reused_int(&r->first_s, &r->first_s_v, h->first / NS);
    out[5] = reused_int(&r->received, &r->received_v, h->received);
    PyObject *names = plan->kind_names;
    out[6] = h->kind >= 0 && h->kind < PyTuple_GET_SIZE(names) ? PyTuple_GET_ITEM(names, h->kind)
                                                               : plan->unknown_name;
    Py_INCREF(out[6]);
    if (r->source == NULL || PyUnicode_GET_LENGTH(r->source) != h->source_len ||
        !PyUnicode_IS_COMPACT_ASCII(r->source) ||
        memcmp(PyUnicode_DATA(r->source), h->source, (size_t)h->source_len) != 0) {
        int bail = 0;
        PyObject *s = utf8(h->source, h->source_len, &bail);
        if (s == NULL) {
            out[7] = NULL;
            return bail ? BAIL : ERR;
        }
        Py_XSETREF(r->source, s);
    }
    out[7] = r->source;
    Py_INCREF(out[7]);
    for (int i = 0; i < EVENT_COLUMNS; i++)
        if (out[i] == NULL)
            return ERR;
    return OK;
}

static int append_row(PyObject *columns, PyObject **values, int count, int offset) {
    for (int i = 0; i < count; i++)
        if (PyList_Append(PyList_GET_ITEM(columns, offset + i), values[i]) < 0)
            return ERR;
    return OK;
}

static int detail_row(const Table *t, const EventHead *h, PyObject *columns, PyObject **head, Memo *memo) {
    PyObject *row[MAX_SLOTS];
    int rc = OK;
    for (int i = 0; i < t->slots; i++) {
        PyObject *d = PyTuple_GET_ITEM(t->defaults, i);
        if (PyList_Check(d)) { /* a repeated field: a list of its own per row */
            row[i] = PyList_New(0);
            if (row[i] == NULL) {
                for (int j = 0; j < i; j++)
                    Py_DECREF(row[j]);
                return ERR;
            }
        } else {
            Py_INCREF(d);
            row[i] = d;
        }
    }
    if (h->body_field == t->body_field)
        for (int i = 0; i < h->bodies && rc == OK; i++)
            rc = decode_message(t->spec, h->body[i], h->body[i] + h->body_len[i], row, memo);
    if (t->source_slot >= 0) /* the event's source_id (head[7]) */
        Py_SETREF(row[t->source_slot], Py_NewRef(head[7]));
    if (rc == OK && (rc = append_row(columns, head, HEAD_COLUMNS, 0)) == OK)
        rc = append_row(columns, row, t->slots, HEAD_COLUMNS);
    for (int i = 0; i < t->slots; i++)
        Py_DECREF(row[i]);
    return rc;
}

static int decode_event(const Plan *plan, const uint8_t *p, const uint8_t *end, Py_ssize_t index,
                        PyObject *tables, PyObject *others, Ctx *ctx) {
    EventHead h;
    PyObject *head[EVENT_COLUMNS] = {NULL};
    int rc = read_head(plan, p, end, &h);
    if (rc != OK)
        return rc;
    int t = h.kind >= 0 && h.kind <= MAX_FIELD ? plan->table_of_kind[h.kind] : -1;
    if (t >= 0 && h.body_field != 0 && h.body_field != plan->table[t].body_field)
        return BAIL; /* another kind's body: protobuf reads the kind's body as empty */
    rc = head_objects(plan, &h, ctx, head);
    if (rc == OK)
        rc = append_row(PyList_GET_ITEM(tables, 0), head, EVENT_COLUMNS, 0);
    if (rc == OK && t >= 0)
        rc = detail_row(&plan->table[t], &h, PyList_GET_ITEM(tables, t + 1), head, ctx->memo[t]);
    else if (rc == OK)
        rc = append_new(others, PyLong_FromSsize_t(index));
    for (int i = 0; i < EVENT_COLUMNS; i++)
        Py_XDECREF(head[i]);
    return rc;
}

static PyObject *new_columns(int count) {
    PyObject *columns = PyList_New(count);
    if (columns == NULL)
        return NULL;
    for (int i = 0; i < count; i++) {
        PyObject *column = PyList_New(0);
        if (column == NULL) {
            Py_DECREF(columns);
            return NULL;
        }
        PyList_SET_ITEM(columns, i, column);
    }
    return columns;
}

static PyObject *new_tables(const Plan *plan) {
    PyObject *tables = PyList_New(plan->tables + 1);
    if (tables == NULL)
        return NULL;
    for (int i = 0; i <= plan->tables; i++) {
        PyObject *columns = new_columns(i == 0 ? EVENT_COLUMNS : HEAD_COLUMNS + plan->table[i - 1].slots);
        if (columns == NULL) {
            Py_DECREF(tables);
            return NULL;
        }
        PyList_SET_ITEM(tables, i, columns);
    }
    return tables;
}

/* decode(plan, page) -> (tables, others) | None */
static PyObject *decode(PyObject *self, PyObject *args) {
    PyObject *capsule;
    Py_buffer page;
    if (!PyArg_ParseTuple(args, "Oy*", &capsule, &page))
        return NULL;
    Plan *plan = PyCapsule_GetPointer(capsule, "mempulse.colmap.plan");
    PyObject *tables = NULL, *others = NULL, *result = NULL;
    Ctx *ctx = NULL;
    int rc = ERR;
    if (plan == NULL || (tables = new_tables(plan)) == NULL || (others = PyList_New(0)) == NULL)
        goto done;
    if ((ctx = PyMem_Calloc(1, sizeof(Ctx))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *p = page.buf, *end = p + page.len;
    Py_ssize_t index = 0;
    rc = OK;
    while (p < end && rc == OK) {
        uint64_t tag;
        if (!read_varint(&p, end, &tag) || (tag >> 3) == 0) {
            rc = BAIL;
        } else if ((tag >> 3) == (uint64_t)plan->events_field && (tag & 7) == 2) {
            const uint8_t *s;
            Py_ssize_t n;
            rc = read_span(&p, end, &s, &n) ? decode_event(plan, s, s + n, index++, tables, others, ctx) : BAIL;
        } else if (!skip_field(&p, end, (int)(tag & 7))) {
            rc = BAIL;
        }
    }
    if (rc == OK)
        result = PyTuple_Pack(2, tables, others);
    else if (rc == BAIL)
        result = Py_NewRef(Py_None);
done:
    ctx_free(ctx);
    Py_XDECREF(tables);
    Py_XDECREF(others);
    PyBuffer_Release(&page);
    return result;
}

/* The seq of one event (its last seq field, 0 without one, as protobuf reads it): 1, or 0 when malformed or when
 * the field has another wire type (protobuf keeps that as unknown). */
static int event_seq(const Plan *plan, const uint8_t *p, const uint8_t *end, uint64_t *seq) {
    *seq = 0;
    while (p < end) {
        uint64_t tag;
        if (!read_varint(&p, end, &tag) || (tag >> 3) == 0)
            return 0;
        uint64_t number = tag >> 3;
        if (number <= MAX_FIELD && plan->head[number] == H_SEQ) {
            if ((tag & 7) != 0 || !read_varint(&p, end, seq))
                return 0;
        } else if (!skip_field(&p, end, (int)(tag & 7))) {
            return 0;
        }
    }
    return 1;
}

/* summary(plan, page) -> (events, first seq, last seq, next_seq_id, last_seq_id) or None: what the exporter needs
 * of a page before mapping it, without building its messages. None: the page is not plain wire data (the caller
 * parses it with protobuf). */
static PyObject *summary(PyObject *self, PyObject *args) {
    PyObject *capsule;
    Py_buffer page;
    if (!PyArg_ParseTuple(args, "Oy*", &capsule, &page))
        return NULL;
    Plan *plan = PyCapsule_GetPointer(capsule, "mempulse.colmap.plan");
    if (plan == NULL) {
        PyBuffer_Release(&page);
        return NULL;
    }
    const uint8_t *p = page.buf, *end = p + page.len;
    uint64_t first = 0, last = 0, next_seq = 0, last_seq = 0, seq;
    Py_ssize_t count = 0;
    int ok = 1;
    while (p < end && ok) {
        uint64_t tag, number;
        const uint8_t *s;
        Py_ssize_t n;
        if (!read_varint(&p, end, &tag) || (number = tag >> 3) == 0) {
            ok = 0;
        } else if (number == (uint64_t)plan->events_field && (tag & 7) == 2) {
            ok = read_span(&p, end, &s, &n) && event_seq(plan, s, s + n, &seq);
            if (ok && count++ == 0)
                first = seq;
            last = seq;
        } else if ((number == (uint64_t)plan->next_seq_field || number == (uint64_t)plan->last_seq_field) &&
                   (tag & 7) == 0) {
            ok = read_varint(&p, end, number == (uint64_t)plan->next_seq_field ? &next_seq : &last_seq);
        } else if ((number == (uint64_t)plan->next_seq_field || number == (uint64_t)plan->last_seq_field) ||
                   number == (uint64_t)plan->events_field) {
            ok = 0; /* another wire type: protobuf keeps it as unknown */
        } else {
            ok = skip_field(&p, end, (int)(tag & 7));
        }
    }
    PyBuffer_Release(&page);
    if (!ok)
        Py_RETURN_NONE;
    return Py_BuildValue("(nKKKK)", count, (unsigned long long)first, (unsigned long long)last,
                         (unsigned long long)next_seq, (unsigned long long)last_seq);
}

static PyMethodDef methods[] = {
    {"summary", summary, METH_VARARGS,
     "summary(plan, page) -> (events, first seq, last seq, next_seq_id, last_seq_id) or None."},
    {"compile_plan", compile_plan, METH_VARARGS, "A plan (colmap.py builds it from the descriptors), compiled."},
    {"decode", decode, METH_VARARGS,
     "decode(plan, page) -> (tables, others) or None: a serialized ScanEventsResponse into column lists."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_colmap", NULL, -1, methods};

PyMODINIT_FUNC PyInit__colmap(void) { return PyModule_Create(&module); }
