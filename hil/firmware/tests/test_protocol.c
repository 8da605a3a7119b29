/* Host unit tests of the firmware's protocol code against hil/vectors/protocol_vectors.json.
 *
 * The vectors reach C through vectors.h, generated from the JSON file by
 * tests/hil/test_firmware_protocol_c.py (or hil.firmware_build.write_vector_header), so the C
 * and Python implementations are checked against the same bytes.
 * Build: gcc -std=c99 -I<dir of vectors.h> -Ihil/firmware/rig test_protocol.c protocol.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "vectors.h"

static int failures = 0, checks = 0;

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        checks++;                                                                            \
        if (!(cond)) {                                                                       \
            failures++;                                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                      \
            printf(__VA_ARGS__);                                                             \
            printf("\n");                                                                    \
        }                                                                                    \
    } while (0)

static size_t unhex(const char *hex, uint8_t *out)
{
    size_t n = strlen(hex) / 2, i;
    for (i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static const char *status_name(proto_status_t s)
{
    switch (s) {
    case PROTO_OK: return "ok";
    case PROTO_ERR_EMPTY: return "empty";
    case PROTO_ERR_TOO_LONG: return "too_long";
    case PROTO_ERR_COBS: return "cobs";
    case PROTO_ERR_SHORT: return "short";
    case PROTO_ERR_CRC: return "crc";
    case PROTO_ERR_UNKNOWN_TYPE: return "unknown_type";
    case PROTO_ERR_BAD_LENGTH: return "bad_length";
    }
    return "?";
}

static void test_crc(void)
{
    uint8_t buf[512];
    size_t i;
    for (i = 0; i < N_CRC; i++) {
        size_t n = unhex(CRC_CASES[i].data, buf);
        uint32_t got = proto_crc32(buf, n);
        CHECK(got == CRC_CASES[i].crc, "crc32 case %zu: got %08lx want %08lx", i,
              (unsigned long)got, (unsigned long)CRC_CASES[i].crc);
    }
    CHECK(proto_crc32((const uint8_t *)"123456789", 9) == 0xCBF43926UL, "crc32 check value");
}

static void test_cobs(void)
{
    uint8_t data[512], enc[512], out[512], dec[512];
    size_t i;
    for (i = 0; i < N_COBS; i++) {
        size_t n = unhex(COBS_CASES[i].data, data);
        size_t ne = unhex(COBS_CASES[i].encoded, enc);
        size_t m = proto_cobs_encode(data, n, out);
        int d;
        CHECK(m == ne && memcmp(out, enc, ne) == 0, "cobs encode case %zu (len %zu vs %zu)", i,
              m, ne);
        CHECK(memchr(out, 0, m) == NULL, "cobs encode case %zu holds a zero byte", i);
        d = proto_cobs_decode(enc, ne, dec, sizeof dec);
        CHECK(d == (int)n && memcmp(dec, data, n) == 0, "cobs decode case %zu (got %d)", i, d);
    }
}

/* Pack the payload of a device message from its JSON fields (in declaration order). */
static int pack_from_fields(uint8_t type, const long long *f, uint8_t *p)
{
    proto_sample_t s;
    switch (type) {
    case PROTO_HELLO:
        CHECK(f[0] == PROTO_VERSION && f[8] == PROTO_MAX_PAYLOAD, "HELLO constants");
        return proto_pack_hello(p, (uint8_t)f[1], (uint8_t)f[2], (uint8_t)f[3], (uint16_t)f[4],
                                (uint16_t)f[5], (uint8_t)f[6], (uint16_t)f[7]);
    case PROTO_SAMPLE:
        s.index = (uint32_t)f[0];
        s.time_us = (uint32_t)f[1];
        s.act_um = (int32_t)f[2];
        s.force_mn = (int32_t)f[3];
        s.pivot_um = (int32_t)f[4];
        s.motor = (int16_t)f[5];
        s.flags = (uint8_t)f[6];
        return proto_pack_sample(p, &s);
    case PROTO_DEVICE_HEARTBEAT:
        return proto_pack_device_heartbeat(p, (uint32_t)f[0], (uint8_t)f[1], (uint32_t)f[2],
                                           (uint32_t)f[3], (uint16_t)f[4]);
    case PROTO_FAULT:
        return proto_pack_fault(p, (uint8_t)f[0], (uint32_t)f[1], (int32_t)f[2]);
    case PROTO_ACK:
        return proto_pack_ack(p, (uint8_t)f[0], (uint16_t)f[1], (uint32_t)f[2], (uint32_t)f[3],
                              (uint16_t)f[4]);
    case PROTO_NACK:
        return proto_pack_nack(p, (uint8_t)f[0], (uint16_t)f[1], (uint8_t)f[2], (uint32_t)f[3]);
    }
    return -1;
}

/* Unpack a host message payload and compare with its JSON fields; returns 1 if checked. */
static int check_unpack(uint8_t type, const uint8_t *p, const long long *f, int nf, size_t i)
{
    proto_config_t c;
    uint32_t a, b;
    uint8_t count, k;
    switch (type) {
    case PROTO_HELLO_REQ:
        CHECK(p[0] == f[0], "frame %zu HELLO_REQ version", i);
        return 1;
    case PROTO_CONFIG: {
        long long got[13];
        int j;
        proto_unpack_config(p, &c);
        got[0] = c.sample_rate_hz; got[1] = c.control_divider; got[2] = c.kp; got[3] = c.ki;
        got[4] = c.kd; got[5] = c.shift; got[6] = c.pwm_max; got[7] = c.integral_limit;
        got[8] = c.act_min_um; got[9] = c.act_max_um; got[10] = c.pivot_min_um;
        got[11] = c.pivot_max_um; got[12] = c.watchdog_ms;
        CHECK(nf == 13, "frame %zu CONFIG field count", i);
        for (j = 0; j < 13; j++) {
            CHECK(got[j] == f[j], "frame %zu CONFIG field %d: %lld vs %lld", i, j, got[j], f[j]);
        }
        return 1;
    }
    case PROTO_START:
        proto_unpack_start(p, &a, &b);
        CHECK(a == f[0] && b == f[1], "frame %zu START fields", i);
        return 1;
    case PROTO_SETPOINTS:
        proto_unpack_setpoints(p, &a, &count);
        CHECK(a == f[0] && count == f[1] && nf == 2 + 2 * count, "frame %zu SETPOINTS header", i);
        for (k = 0; k < count; k++) {
            int16_t act = (int16_t)proto_get_u16(p + 5 + 4 * k);
            int16_t piv = (int16_t)proto_get_u16(p + 7 + 4 * k);
            CHECK(act == f[2 + 2 * k] && piv == f[3 + 2 * k], "frame %zu setpoint %u", i, k);
        }
        return 1;
    }
    return 0;
}

static void test_frames(void)
{
    uint8_t payload[128], wire[128], out[128], raw[PROTO_MAX_WIRE], packed[128];
    size_t i;
    for (i = 0; i < N_FRAMES; i++) {
        const frame_case_t *fc = &FRAMES[i];
        size_t np = unhex(fc->payload, payload), nw = unhex(fc->wire, wire), m;
        proto_frame_t fr;
        proto_status_t st;
        int np2;
        m = proto_encode_frame(fc->type, fc->seq, payload, (uint8_t)np, out);
        CHECK(m == nw && memcmp(out, wire, nw) == 0, "frame %zu (%s) encode", i, fc->name);
        st = proto_decode_frame(wire, nw, raw, &fr);
        CHECK(st == PROTO_OK, "frame %zu (%s) decode: %s", i, fc->name, status_name(st));
        if (st == PROTO_OK) {
            CHECK(fr.type == fc->type && fr.seq == fc->seq && fr.len == np
                      && memcmp(fr.payload, payload, np) == 0,
                  "frame %zu (%s) decoded fields", i, fc->name);
        }
        st = proto_decode_frame(wire, nw - 1, raw, &fr); /* without the delimiter */
        CHECK(st == PROTO_OK, "frame %zu decode without delimiter", i);
        np2 = pack_from_fields(fc->type, fc->fields, packed);
        if (np2 >= 0) {
            CHECK(np2 == (int)np && memcmp(packed, payload, np) == 0, "frame %zu (%s) pack", i,
                  fc->name);
        } else {
            CHECK(check_unpack(fc->type, payload, fc->fields, fc->nfields, i) || np == 0,
                  "frame %zu (%s): no packer or unpacker", i, fc->name);
        }
    }
}

static void test_invalid(void)
{
    uint8_t wire[256], raw[PROTO_MAX_WIRE];
    proto_frame_t fr;
    size_t i;
    for (i = 0; i < N_INVALID; i++) {
        size_t n = unhex(INVALID[i].wire, wire);
        proto_status_t st = proto_decode_frame(wire, n, raw, &fr);
        CHECK(strcmp(status_name(st), INVALID[i].error) == 0, "invalid %s: got %s want %s",
              INVALID[i].name, status_name(st), INVALID[i].error);
    }
    /* an over-long run and an empty frame */
    memset(wire, 0x11, 100);
    CHECK(proto_decode_frame(wire, 100, raw, &fr) == PROTO_ERR_TOO_LONG, "too_long");
    wire[0] = 0;
    CHECK(proto_decode_frame(wire, 1, raw, &fr) == PROTO_ERR_EMPTY, "empty");
}

/* Feed wire bytes through the streaming receiver; returns the status at the delimiter. */
static int stream(const uint8_t *wire, size_t n, uint8_t *raw, proto_frame_t *fr)
{
    proto_rx_t rx;
    size_t i;
    int st = PROTO_RX_MORE;
    proto_rx_init(&rx, raw);
    for (i = 0; i < n; i++) {
        int s = proto_rx_byte(&rx, wire[i], fr);
        if (s != PROTO_RX_MORE) {
            st = s;
        }
    }
    return st;
}

static void test_streaming(void)
{
    uint8_t wire[1024], raw[PROTO_MAX_WIRE], raw2[PROTO_MAX_WIRE], payload[128];
    proto_frame_t fr, fr2;
    proto_rx_t rx;
    size_t i, n, total = 0;
    int good = 0;
    for (i = 0; i < N_FRAMES; i++) {
        n = unhex(FRAMES[i].wire, wire);
        CHECK(stream(wire, n, raw, &fr) == PROTO_OK, "stream frame %zu", i);
        CHECK(proto_decode_frame(wire, n, raw2, &fr2) == PROTO_OK && fr.type == fr2.type
                  && fr.seq == fr2.seq && fr.len == fr2.len
                  && memcmp(fr.payload, fr2.payload, fr.len) == 0,
              "stream frame %zu equals the whole-frame decoder", i);
    }
    for (i = 0; i < N_INVALID; i++) {
        n = unhex(INVALID[i].wire, wire);
        CHECK(strcmp(status_name((proto_status_t)stream(wire, n, raw, &fr)), INVALID[i].error)
                  == 0, "stream invalid %s", INVALID[i].name);
    }
    memset(wire, 0x11, 100);
    wire[100] = 0;
    CHECK(stream(wire, 101, raw, &fr) == PROTO_ERR_TOO_LONG, "stream too_long");
    /* one byte stream: all frames, with garbage and empty frames between them */
    proto_rx_init(&rx, raw);
    for (i = 0; i < N_FRAMES; i++) {
        size_t k;
        n = unhex(FRAMES[i].wire, wire);
        static const uint8_t junk[] = {0x00, 0x05, 0x41, 0x00, 0x00, 0xFF, 0x7E, 0x00};
        for (k = 0; k < sizeof junk; k++) {
            int s = proto_rx_byte(&rx, junk[k], &fr);
            CHECK(s != PROTO_OK, "junk never decodes");
        }
        for (k = 0; k < n; k++) {
            int s = proto_rx_byte(&rx, wire[k], &fr);
            if (s == PROTO_OK) {
                size_t np = unhex(FRAMES[i].payload, payload);
                good += fr.type == FRAMES[i].type && fr.len == np
                        && memcmp(fr.payload, payload, np) == 0;
            }
        }
        total++;
    }
    CHECK(good == (int)total, "stream with junk: %d of %zu frames", good, total);
}

int main(void)
{
    test_crc();
    test_cobs();
    test_frames();
    test_invalid();
    test_streaming();
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
