/* impbench rig protocol v1 in C (see protocol.h and hil/PROTOCOL.md). */
#include "protocol.h"

#ifdef __AVR__
/* speed over size for the per-byte paths (the Uno has flash to spare, not cycles) */
#pragma GCC optimize("O2")
#endif

#ifdef __AVR__
#include <avr/pgmspace.h>
#define CRC_TABLE_ATTR PROGMEM
#define CRC_ENTRY(i) pgm_read_dword(&crc_table[(i)])
#else
#define CRC_TABLE_ATTR
#define CRC_ENTRY(i) (crc_table[(i)])
#endif

/* Reflected CRC-32 table of polynomial 0x04C11DB7 (0xEDB88320 reflected), in flash on AVR. */
static const uint32_t crc_table[256] CRC_TABLE_ATTR = {
    0x00000000UL, 0x77073096UL, 0xEE0E612CUL, 0x990951BAUL, 0x076DC419UL, 0x706AF48FUL,
    0xE963A535UL, 0x9E6495A3UL, 0x0EDB8832UL, 0x79DCB8A4UL, 0xE0D5E91EUL, 0x97D2D988UL,
    0x09B64C2BUL, 0x7EB17CBDUL, 0xE7B82D07UL, 0x90BF1D91UL, 0x1DB71064UL, 0x6AB020F2UL,
    0xF3B97148UL, 0x84BE41DEUL, 0x1ADAD47DUL, 0x6DDDE4EBUL, 0xF4D4B551UL, 0x83D385C7UL,
    0x136C9856UL, 0x646BA8C0UL, 0xFD62F97AUL, 0x8A65C9ECUL, 0x14015C4FUL, 0x63066CD9UL,
    0xFA0F3D63UL, 0x8D080DF5UL, 0x3B6E20C8UL, 0x4C69105EUL, 0xD56041E4UL, 0xA2677172UL,
    0x3C03E4D1UL, 0x4B04D447UL, 0xD20D85FDUL, 0xA50AB56BUL, 0x35B5A8FAUL, 0x42B2986CUL,
    0xDBBBC9D6UL, 0xACBCF940UL, 0x32D86CE3UL, 0x45DF5C75UL, 0xDCD60DCFUL, 0xABD13D59UL,
    0x26D930ACUL, 0x51DE003AUL, 0xC8D75180UL, 0xBFD06116UL, 0x21B4F4B5UL, 0x56B3C423UL,
    0xCFBA9599UL, 0xB8BDA50FUL, 0x2802B89EUL, 0x5F058808UL, 0xC60CD9B2UL, 0xB10BE924UL,
    0x2F6F7C87UL, 0x58684C11UL, 0xC1611DABUL, 0xB6662D3DUL, 0x76DC4190UL, 0x01DB7106UL,
    0x98D220BCUL, 0xEFD5102AUL, 0x71B18589UL, 0x06B6B51FUL, 0x9FBFE4A5UL, 0xE8B8D433UL,
    0x7807C9A2UL, 0x0F00F934UL, 0x9609A88EUL, 0xE10E9818UL, 0x7F6A0DBBUL, 0x086D3D2DUL,
    0x91646C97UL, 0xE6635C01UL, 0x6B6B51F4UL, 0x1C6C6162UL, 0x856530D8UL, 0xF262004EUL,
    0x6C0695EDUL, 0x1B01A57BUL, 0x8208F4C1UL, 0xF50FC457UL, 0x65B0D9C6UL, 0x12B7E950UL,
    0x8BBEB8EAUL, 0xFCB9887CUL, 0x62DD1DDFUL, 0x15DA2D49UL, 0x8CD37CF3UL, 0xFBD44C65UL,
    0x4DB26158UL, 0x3AB551CEUL, 0xA3BC0074UL, 0xD4BB30E2UL, 0x4ADFA541UL, 0x3DD895D7UL,
    0xA4D1C46DUL, 0xD3D6F4FBUL, 0x4369E96AUL, 0x346ED9FCUL, 0xAD678846UL, 0xDA60B8D0UL,
    0x44042D73UL, 0x33031DE5UL, 0xAA0A4C5FUL, 0xDD0D7CC9UL, 0x5005713CUL, 0x270241AAUL,
    0xBE0B1010UL, 0xC90C2086UL, 0x5768B525UL, 0x206F85B3UL, 0xB966D409UL, 0xCE61E49FUL,
    0x5EDEF90EUL, 0x29D9C998UL, 0xB0D09822UL, 0xC7D7A8B4UL, 0x59B33D17UL, 0x2EB40D81UL,
    0xB7BD5C3BUL, 0xC0BA6CADUL, 0xEDB88320UL, 0x9ABFB3B6UL, 0x03B6E20CUL, 0x74B1D29AUL,
    0xEAD54739UL, 0x9DD277AFUL, 0x04DB2615UL, 0x73DC1683UL, 0xE3630B12UL, 0x94643B84UL,
    0x0D6D6A3EUL, 0x7A6A5AA8UL, 0xE40ECF0BUL, 0x9309FF9DUL, 0x0A00AE27UL, 0x7D079EB1UL,
    0xF00F9344UL, 0x8708A3D2UL, 0x1E01F268UL, 0x6906C2FEUL, 0xF762575DUL, 0x806567CBUL,
    0x196C3671UL, 0x6E6B06E7UL, 0xFED41B76UL, 0x89D32BE0UL, 0x10DA7A5AUL, 0x67DD4ACCUL,
    0xF9B9DF6FUL, 0x8EBEEFF9UL, 0x17B7BE43UL, 0x60B08ED5UL, 0xD6D6A3E8UL, 0xA1D1937EUL,
    0x38D8C2C4UL, 0x4FDFF252UL, 0xD1BB67F1UL, 0xA6BC5767UL, 0x3FB506DDUL, 0x48B2364BUL,
    0xD80D2BDAUL, 0xAF0A1B4CUL, 0x36034AF6UL, 0x41047A60UL, 0xDF60EFC3UL, 0xA867DF55UL,
    0x316E8EEFUL, 0x4669BE79UL, 0xCB61B38CUL, 0xBC66831AUL, 0x256FD2A0UL, 0x5268E236UL,
    0xCC0C7795UL, 0xBB0B4703UL, 0x220216B9UL, 0x5505262FUL, 0xC5BA3BBEUL, 0xB2BD0B28UL,
    0x2BB45A92UL, 0x5CB36A04UL, 0xC2D7FFA7UL, 0xB5D0CF31UL, 0x2CD99E8BUL, 0x5BDEAE1DUL,
    0x9B64C2B0UL, 0xEC63F226UL, 0x756AA39CUL, 0x026D930AUL, 0x9C0906A9UL, 0xEB0E363FUL,
    0x72076785UL, 0x05005713UL, 0x95BF4A82UL, 0xE2B87A14UL, 0x7BB12BAEUL, 0x0CB61B38UL,
    0x92D28E9BUL, 0xE5D5BE0DUL, 0x7CDCEFB7UL, 0x0BDBDF21UL, 0x86D3D2D4UL, 0xF1D4E242UL,
    0x68DDB3F8UL, 0x1FDA836EUL, 0x81BE16CDUL, 0xF6B9265BUL, 0x6FB077E1UL, 0x18B74777UL,
    0x88085AE6UL, 0xFF0F6A70UL, 0x66063BCAUL, 0x11010B5CUL, 0x8F659EFFUL, 0xF862AE69UL,
    0x616BFFD3UL, 0x166CCF45UL, 0xA00AE278UL, 0xD70DD2EEUL, 0x4E048354UL, 0x3903B3C2UL,
    0xA7672661UL, 0xD06016F7UL, 0x4969474DUL, 0x3E6E77DBUL, 0xAED16A4AUL, 0xD9D65ADCUL,
    0x40DF0B66UL, 0x37D83BF0UL, 0xA9BCAE53UL, 0xDEBB9EC5UL, 0x47B2CF7FUL, 0x30B5FFE9UL,
    0xBDBDF21CUL, 0xCABAC28AUL, 0x53B39330UL, 0x24B4A3A6UL, 0xBAD03605UL, 0xCDD70693UL,
    0x54DE5729UL, 0x23D967BFUL, 0xB3667A2EUL, 0xC4614AB8UL, 0x5D681B02UL, 0x2A6F2B94UL,
    0xB40BBE37UL, 0xC30C8EA1UL, 0x5A05DF1BUL, 0x2D02EF8DUL,
};

#define CRC_STEP(crc, b) (CRC_ENTRY((uint8_t)((crc) ^ (b))) ^ ((crc) >> 8))

uint32_t proto_crc32(const uint8_t *data, size_t n)
{
    uint32_t crc = 0xFFFFFFFFUL;
    while (n--) {
        crc = CRC_ENTRY((uint8_t)(crc ^ *data++)) ^ (crc >> 8);
    }
    return crc ^ 0xFFFFFFFFUL;
}

size_t proto_cobs_encode(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t code_at = 0, o = 1;
    uint8_t code = 1;
    size_t i;
    for (i = 0; i < n; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            if (++code == 0xFF) {
                out[code_at] = code;
                code = 1;
                if (i + 1 == n) {   /* a final run of exactly 254 bytes: no trailing code */
                    return o;
                }
                code_at = o++;
            }
        }
    }
    out[code_at] = code;
    return o;
}

int proto_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = in[i];
        size_t end, k;
        if (code == 0) {
            return -1;
        }
        end = i + code;
        if (end > n) {
            return -1;
        }
        for (k = i + 1; k < end; k++) {
            if (in[k] == 0 || o >= cap) {
                return -1;
            }
            out[o++] = in[k];
        }
        i = end;
        if (code != 0xFF && i < n) {
            if (o >= cap) {
                return -1;
            }
            out[o++] = 0;
        }
    }
    return (int)o;
}

int proto_type_known(uint8_t type)
{
    return (type >= PROTO_HELLO_REQ && type <= PROTO_ESTOP)
        || (type >= PROTO_HELLO && type <= PROTO_NACK);
}

int proto_length_ok(uint8_t type, const uint8_t *payload, size_t len)
{
    switch (type) {
    case PROTO_HELLO_REQ: return len == PROTO_LEN_HELLO_REQ;
    case PROTO_CONFIG: return len == PROTO_LEN_CONFIG;
    case PROTO_START: return len == PROTO_LEN_START;
    case PROTO_STOP:
    case PROTO_HEARTBEAT:
    case PROTO_ESTOP: return len == 0;
    case PROTO_SETPOINTS:
        return len >= 5 && payload[4] >= 1 && payload[4] <= PROTO_MAX_SETPOINTS
            && len == 5 + 4 * (size_t)payload[4];
    case PROTO_HELLO: return len == PROTO_LEN_HELLO;
    case PROTO_SAMPLE: return len == PROTO_LEN_SAMPLE;
    case PROTO_DEVICE_HEARTBEAT: return len == PROTO_LEN_DEVICE_HEARTBEAT;
    case PROTO_FAULT: return len == PROTO_LEN_FAULT;
    case PROTO_ACK: return len == PROTO_LEN_ACK;
    case PROTO_NACK: return len == PROTO_LEN_NACK;
    default: return 0;
    }
}

void proto_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void proto_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint16_t proto_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
}

uint32_t proto_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
        | ((uint32_t)p[3] << 24);
}

size_t proto_encode_frame(uint8_t type, uint16_t seq, const uint8_t *payload, uint8_t len,
                          uint8_t *wire)
{
    uint8_t raw[PROTO_MAX_FRAME];
    uint8_t i;
    size_t n;
    if (len > PROTO_MAX_PAYLOAD) {
        return 0;
    }
    raw[0] = type;
    proto_put_u16(raw + 1, seq);
    for (i = 0; i < len; i++) {
        raw[3 + i] = payload[i];
    }
    proto_put_u32(raw + 3 + len, proto_crc32(raw, 3u + len));
    n = proto_cobs_encode(raw, 7u + len, wire);
    wire[n] = 0;
    return n + 1;
}

proto_status_t proto_decode_frame(const uint8_t *wire, size_t n, uint8_t *raw,
                                  proto_frame_t *frame)
{
    int m;
    size_t body;
    if (n > 0 && wire[n - 1] == 0) {
        n--;
    }
    if (n == 0) {
        return PROTO_ERR_EMPTY;
    }
    if (n > PROTO_MAX_WIRE) {
        return PROTO_ERR_TOO_LONG;
    }
    m = proto_cobs_decode(wire, n, raw, PROTO_MAX_WIRE);
    if (m < 0) {
        return PROTO_ERR_COBS;
    }
    if (m < 7) {
        return PROTO_ERR_SHORT;
    }
    body = (size_t)m - 4;
    if (proto_crc32(raw, body) != proto_get_u32(raw + body)) {
        return PROTO_ERR_CRC;
    }
    if (!proto_type_known(raw[0])) {
        return PROTO_ERR_UNKNOWN_TYPE;
    }
    if (!proto_length_ok(raw[0], raw + 3, body - 3)) {
        return PROTO_ERR_BAD_LENGTH;
    }
    frame->type = raw[0];
    frame->seq = proto_get_u16(raw + 1);
    frame->payload = raw + 3;
    frame->len = (uint8_t)(body - 3);
    return PROTO_OK;
}

uint8_t proto_pack_hello(uint8_t *p, uint8_t fw_major, uint8_t fw_minor, uint8_t fw_patch,
                         uint16_t rig_id, uint16_t loop_rate_hz, uint8_t n_channels,
                         uint16_t buffer_capacity)
{
    p[0] = PROTO_VERSION;
    p[1] = fw_major;
    p[2] = fw_minor;
    p[3] = fw_patch;
    proto_put_u16(p + 4, rig_id);
    proto_put_u16(p + 6, loop_rate_hz);
    p[8] = n_channels;
    proto_put_u16(p + 9, buffer_capacity);
    p[11] = PROTO_MAX_PAYLOAD;
    return PROTO_LEN_HELLO;
}

uint8_t proto_pack_sample(uint8_t *p, const proto_sample_t *s)
{
    proto_put_u32(p, s->index);
    proto_put_u32(p + 4, s->time_us);
    proto_put_u32(p + 8, (uint32_t)s->act_um);
    proto_put_u32(p + 12, (uint32_t)s->force_mn);
    proto_put_u32(p + 16, (uint32_t)s->pivot_um);
    proto_put_u16(p + 20, (uint16_t)s->motor);
    p[22] = s->flags;
    return PROTO_LEN_SAMPLE;
}

uint8_t proto_pack_device_heartbeat(uint8_t *p, uint32_t time_us, uint8_t flags,
                                    uint32_t write_index, uint32_t read_index,
                                    uint16_t credits)
{
    proto_put_u32(p, time_us);
    p[4] = flags;
    proto_put_u32(p + 5, write_index);
    proto_put_u32(p + 9, read_index);
    proto_put_u16(p + 13, credits);
    return PROTO_LEN_DEVICE_HEARTBEAT;
}

uint8_t proto_pack_fault(uint8_t *p, uint8_t code, uint32_t index, int32_t detail)
{
    p[0] = code;
    proto_put_u32(p + 1, index);
    proto_put_u32(p + 5, (uint32_t)detail);
    return PROTO_LEN_FAULT;
}

uint8_t proto_pack_ack(uint8_t *p, uint8_t acked_type, uint16_t acked_seq,
                       uint32_t write_index, uint32_t read_index, uint16_t credits)
{
    p[0] = acked_type;
    proto_put_u16(p + 1, acked_seq);
    proto_put_u32(p + 3, write_index);
    proto_put_u32(p + 7, read_index);
    proto_put_u16(p + 11, credits);
    return PROTO_LEN_ACK;
}

uint8_t proto_pack_nack(uint8_t *p, uint8_t acked_type, uint16_t acked_seq, uint8_t reason,
                        uint32_t expected_index)
{
    p[0] = acked_type;
    proto_put_u16(p + 1, acked_seq);
    p[3] = reason;
    proto_put_u32(p + 4, expected_index);
    return PROTO_LEN_NACK;
}

void proto_unpack_config(const uint8_t *p, proto_config_t *c)
{
    c->sample_rate_hz = proto_get_u16(p);
    c->control_divider = p[2];
    c->kp = proto_get_u16(p + 3);
    c->ki = proto_get_u16(p + 5);
    c->kd = proto_get_u16(p + 7);
    c->shift = p[9];
    c->pwm_max = proto_get_u16(p + 10);
    c->integral_limit = (int32_t)proto_get_u32(p + 12);
    c->act_min_um = (int32_t)proto_get_u32(p + 16);
    c->act_max_um = (int32_t)proto_get_u32(p + 20);
    c->pivot_min_um = (int32_t)proto_get_u32(p + 24);
    c->pivot_max_um = (int32_t)proto_get_u32(p + 28);
    c->watchdog_ms = proto_get_u16(p + 32);
}

void proto_unpack_start(const uint8_t *p, uint32_t *start_index, uint32_t *n_samples)
{
    *start_index = proto_get_u32(p);
    *n_samples = proto_get_u32(p + 4);
}

void proto_unpack_setpoints(const uint8_t *p, uint32_t *first_index, uint8_t *count)
{
    *first_index = proto_get_u32(p);
    *count = p[4];
}

void proto_rx_init(proto_rx_t *rx, uint8_t *raw)
{
    rx->raw = raw;
    rx->n = 0;
    rx->wire_n = 0;
    rx->left = 0;
    rx->code = 0;
    rx->skip = 0;
    rx->crc = 0xFFFFFFFFUL;
}

static void rx_emit(proto_rx_t *rx, uint8_t b)
{
    uint8_t n = rx->n;
    rx->raw[n] = b;
    if (n >= 4) { /* the last four bytes are the CRC itself: lag the register by four */
        rx->crc = CRC_STEP(rx->crc, rx->raw[n - 4]);
    }
    rx->n = (uint8_t)(n + 1);
}

int proto_rx_byte(proto_rx_t *rx, uint8_t b, proto_frame_t *frame)
{
    int st;
    uint8_t body;
    if (b != 0) {
        if (rx->skip) {
            return PROTO_RX_MORE;
        }
        if (++rx->wire_n > PROTO_MAX_WIRE) {
            rx->skip = 1;
            return PROTO_RX_MORE;
        }
        if (rx->left) {
            rx_emit(rx, b);
            rx->left--;
        } else {
            if (rx->code && rx->code != 0xFF) {
                rx_emit(rx, 0); /* the zero a block code stands for */
            }
            rx->code = b;
            rx->left = (uint8_t)(b - 1);
        }
        return PROTO_RX_MORE;
    }
    /* delimiter: judge the frame, then get ready for the next one */
    if (rx->skip) {
        st = PROTO_ERR_TOO_LONG;
    } else if (rx->wire_n == 0) {
        st = PROTO_RX_MORE; /* empty frame: nothing to report */
    } else if (rx->left) {
        st = PROTO_ERR_COBS;
    } else if (rx->n < 7) {
        st = PROTO_ERR_SHORT;
    } else {
        body = (uint8_t)(rx->n - 4);
        if ((uint32_t)(rx->crc ^ 0xFFFFFFFFUL) != proto_get_u32(rx->raw + body)) {
            st = PROTO_ERR_CRC;
        } else if (!proto_type_known(rx->raw[0])) {
            st = PROTO_ERR_UNKNOWN_TYPE;
        } else if (!proto_length_ok(rx->raw[0], rx->raw + 3, body - 3u)) {
            st = PROTO_ERR_BAD_LENGTH;
        } else {
            frame->type = rx->raw[0];
            frame->seq = proto_get_u16(rx->raw + 1);
            frame->payload = rx->raw + 3;
            frame->len = (uint8_t)(body - 3);
            st = PROTO_OK;
        }
    }
    proto_rx_init(rx, rx->raw);
    return st;
}
