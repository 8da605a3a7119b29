/* impbench rig protocol v1 in C: COBS framing, CRC-32, message layouts (hil/PROTOCOL.md).
 *
 * Portable C99: builds for the ATmega328P (CRC table in flash) and on the host (unit tests
 * against hil/vectors/protocol_vectors.json). No dynamic memory; every buffer is the caller's.
 * All integers on the wire are little-endian.
 */
#ifndef IMPBENCH_PROTOCOL_H
#define IMPBENCH_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PROTO_VERSION 1
#define PROTO_MAX_PAYLOAD 56                         /* bytes */
#define PROTO_MAX_FRAME (1 + 2 + PROTO_MAX_PAYLOAD + 4) /* 63: type|seq|payload|crc */
#define PROTO_MAX_WIRE (PROTO_MAX_FRAME + 2)           /* 65: COBS-encoded, no delimiter */
#define PROTO_MAX_SETPOINTS 12
#define PROTO_SETPOINT_UNIT_UM 10

/* message types (bit 7 set: device -> host) */
enum {
    PROTO_HELLO_REQ = 0x01, PROTO_CONFIG = 0x02, PROTO_START = 0x03, PROTO_STOP = 0x04,
    PROTO_SETPOINTS = 0x05, PROTO_HEARTBEAT = 0x06, PROTO_ESTOP = 0x07,
    PROTO_HELLO = 0x81, PROTO_SAMPLE = 0x82, PROTO_DEVICE_HEARTBEAT = 0x83, PROTO_FAULT = 0x84,
    PROTO_ACK = 0x85, PROTO_NACK = 0x86
};

/* payload sizes, bytes (SETPOINTS: 5 + 4 * count) */
enum {
    PROTO_LEN_HELLO_REQ = 1, PROTO_LEN_CONFIG = 34, PROTO_LEN_START = 8, PROTO_LEN_HELLO = 12,
    PROTO_LEN_SAMPLE = 23, PROTO_LEN_DEVICE_HEARTBEAT = 15, PROTO_LEN_FAULT = 9,
    PROTO_LEN_ACK = 13, PROTO_LEN_NACK = 8
};

enum { /* FAULT codes */
    PROTO_FAULT_LIMIT = 1, PROTO_FAULT_WATCHDOG = 2, PROTO_FAULT_UNDERRUN = 3,
    PROTO_FAULT_ESTOP = 4, PROTO_FAULT_TRAVEL = 5, PROTO_FAULT_RESET = 6
};

enum { /* NACK reasons */
    PROTO_NACK_BAD_INDEX = 1, PROTO_NACK_OVERFLOW = 2, PROTO_NACK_LIMIT = 3,
    PROTO_NACK_BAD_LENGTH = 4, PROTO_NACK_BAD_STATE = 5, PROTO_NACK_UNKNOWN_TYPE = 6,
    PROTO_NACK_BAD_CONFIG = 7
};

enum { /* status flags */
    PROTO_FLAG_RUNNING = 0x01, PROTO_FLAG_PIVOT_LIMIT = 0x02, PROTO_FLAG_ACT_LIMIT = 0x04,
    PROTO_FLAG_UNDERRUN = 0x08, PROTO_FLAG_WATCHDOG = 0x10, PROTO_FLAG_ESTOP = 0x20,
    PROTO_FLAG_SATURATED = 0x40, PROTO_FLAG_CONFIGURED = 0x80
};

/* decode results (FrameError.reason of hil/protocol.py) */
typedef enum {
    PROTO_OK = 0, PROTO_ERR_EMPTY, PROTO_ERR_TOO_LONG, PROTO_ERR_COBS, PROTO_ERR_SHORT,
    PROTO_ERR_CRC, PROTO_ERR_UNKNOWN_TYPE, PROTO_ERR_BAD_LENGTH
} proto_status_t;

/* A decoded frame; payload points into the caller's raw buffer. */
typedef struct {
    uint8_t type;
    uint16_t seq;
    const uint8_t *payload;
    uint8_t len;
} proto_frame_t;

typedef struct {
    uint16_t sample_rate_hz;
    uint8_t control_divider;
    uint16_t kp, ki, kd;
    uint8_t shift;
    uint16_t pwm_max;
    int32_t integral_limit, act_min_um, act_max_um, pivot_min_um, pivot_max_um;
    uint16_t watchdog_ms;
} proto_config_t;

typedef struct {
    uint32_t index, time_us;
    int32_t act_um, force_mn, pivot_um;
    int16_t motor;
    uint8_t flags;
} proto_sample_t;

/* CRC-32/ISO-HDLC (zlib.crc32): crc32("123456789") == 0xCBF43926. */
uint32_t proto_crc32(const uint8_t *data, size_t n);
/* COBS (Cheshire & Baker 1999), canonical encoder; returns the encoded length (no 0x00). */
size_t proto_cobs_encode(const uint8_t *in, size_t n, uint8_t *out);
/* COBS decoder (input without delimiter); returns the decoded length, -1 if invalid or if
 * the output would exceed cap bytes. */
int proto_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);
/* Whether len is a valid payload length for a known type; 0 for unknown types too. */
int proto_type_known(uint8_t type);
int proto_length_ok(uint8_t type, const uint8_t *payload, size_t len);
/* Encode a frame into wire (>= PROTO_MAX_WIRE + 1 bytes); returns the byte count including
 * the trailing 0x00, or 0 if len > PROTO_MAX_PAYLOAD. */
size_t proto_encode_frame(uint8_t type, uint16_t seq, const uint8_t *payload, uint8_t len,
                          uint8_t *wire);
/* Decode one wire frame (without or with its trailing 0x00) into raw (>= PROTO_MAX_WIRE
 * bytes); frame->payload points into raw. */
proto_status_t proto_decode_frame(const uint8_t *wire, size_t n, uint8_t *raw,
                                  proto_frame_t *frame);

/* Streaming receiver: COBS decoding and the CRC are computed byte by byte as the bytes arrive
 * (no second pass over the frame), into the caller's raw buffer (>= PROTO_MAX_WIRE bytes). */
#define PROTO_RX_MORE (-1)
typedef struct {
    uint8_t *raw;   /* decoded bytes of the frame so far */
    uint8_t n;      /* decoded byte count */
    uint8_t wire_n; /* encoded byte count */
    uint8_t left;   /* bytes left in the current COBS block */
    uint8_t code;   /* code byte of the current block (0: expecting a code byte) */
    uint8_t skip;   /* over-long frame: discard until the next delimiter */
    uint32_t crc;   /* running CRC register over raw[0 .. n-5] */
} proto_rx_t;

void proto_rx_init(proto_rx_t *rx, uint8_t *raw);
/* Feed one wire byte. Returns PROTO_RX_MORE until a delimiter ends a non-empty frame; then
 * PROTO_OK with *frame filled (payload inside rx->raw), or the reason the frame was rejected
 * (the same reasons and order as proto_decode_frame). The receiver is ready for the next frame
 * afterwards; rx->raw may be pointed at another buffer between frames. */
int proto_rx_byte(proto_rx_t *rx, uint8_t b, proto_frame_t *frame);

/* little-endian helpers */
void proto_put_u16(uint8_t *p, uint16_t v);
void proto_put_u32(uint8_t *p, uint32_t v);
uint16_t proto_get_u16(const uint8_t *p);
uint32_t proto_get_u32(const uint8_t *p);

/* payload packers (device -> host); each returns the payload length */
uint8_t proto_pack_hello(uint8_t *p, uint8_t fw_major, uint8_t fw_minor, uint8_t fw_patch,
                         uint16_t rig_id, uint16_t loop_rate_hz, uint8_t n_channels,
                         uint16_t buffer_capacity);
uint8_t proto_pack_sample(uint8_t *p, const proto_sample_t *s);
uint8_t proto_pack_device_heartbeat(uint8_t *p, uint32_t time_us, uint8_t flags,
                                    uint32_t write_index, uint32_t read_index,
                                    uint16_t credits);
uint8_t proto_pack_fault(uint8_t *p, uint8_t code, uint32_t index, int32_t detail);
uint8_t proto_pack_ack(uint8_t *p, uint8_t acked_type, uint16_t acked_seq,
                       uint32_t write_index, uint32_t read_index, uint16_t credits);
uint8_t proto_pack_nack(uint8_t *p, uint8_t acked_type, uint16_t acked_seq, uint8_t reason,
                        uint32_t expected_index);
/* payload unpackers (host -> device); the length must have passed proto_length_ok */
void proto_unpack_config(const uint8_t *p, proto_config_t *c);
void proto_unpack_start(const uint8_t *p, uint32_t *start_index, uint32_t *n_samples);
/* SETPOINTS header; setpoint k: actuator = proto_get_u16(p + 5 + 4k) as int16, pivot at +2 */
void proto_unpack_setpoints(const uint8_t *p, uint32_t *first_index, uint8_t *count);

#ifdef __cplusplus
}
#endif
#endif
