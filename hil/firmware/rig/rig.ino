/* impbench lever-rig firmware for the Arduino Uno (ATmega328P, 16 MHz).
 *
 * Speaks rig protocol v1 (hil/PROTOCOL.md) at 500 kbaud: HELLO/CONFIG handshake, setpoint ring
 * buffer with credits, device heartbeat, host-silence watchdog, software travel limits, e-stop.
 * The control loop runs from the Timer1 compare interrupt at CONFIG.sample_rate_hz (default
 * RIG_DEFAULT_FS): it samples the three analogue channels, reports the previous tick's SAMPLE,
 * plays the next perturbation setpoint on the actuator DAC and, every control_divider ticks, runs
 * the integer pivot PID (PROTOCOL.md Sec. 4)
 *     pwm = clamp((kp e + ki sum(e) + kd (meas_prev - meas)) >> shift, +-pwm_max)
 * on potentiometer counts. The main loop owns the UART: it decodes host frames and encodes the
 * events queued by the control interrupt, so the interrupt never waits for the serial line.
 *
 * Pins: D2 e-stop input (normally-closed contact to GND; open = stop), D3/D4 pivot limit
 * switches low/high (closed = LOW), D5 motor PWM (OC0B) + D7 direction (HIGH = towards
 * pivot_max), D8 loop-busy output (high while the control interrupt runs; for a scope),
 * D10/D11/D13 SPI to a 16-bit DAC (24-bit frame: 0x00, code MSB, code LSB) commanding the
 * perturbation actuator, A0 pivot potentiometer, A1 force amplifier, A2 actuator position.
 * Calibration constants of a rig are in rig_config.h (impbench firmware build --rig FILE).
 */
#include <Arduino.h>
#include <avr/interrupt.h>
#include <avr/wdt.h>

#include "protocol.h"
#include "rig_config.h"

#define FW_MAJOR 0
#define FW_MINOR 1
#define FW_PATCH 0
#define N_CHANNELS 3
#define CAPACITY 128            /* setpoint slots (power of two) */
#define HEARTBEAT_US 50000UL    /* device heartbeat period, us of device time */
#define TRAVEL_MARGIN_UM 5000L  /* FAULT TRAVEL beyond a software limit by this much */
#define RX_SIZE 256             /* UART receive ring, bytes: absorbs a burst of chunks */
#define TX_SIZE 128             /* UART transmit ring, bytes (power of two) */
#define EV_SIZE 4               /* control-interrupt event queue (power of two) */
#define UART_BAUD 500000UL      /* see the note at UART setup */

/* ------------------------------------------------------------------ shared state */

typedef struct {
    int16_t act;  /* 10 um units */
    int16_t piv;
} setpoint_t;

typedef struct {
    uint8_t type;
    uint8_t len;
    uint8_t payload[PROTO_LEN_SAMPLE];
} event_t;

static setpoint_t sp_buf[CAPACITY];
static event_t ev_buf[EV_SIZE];
static volatile uint8_t ev_head, ev_tail;
static volatile uint16_t ev_dropped;

/* host bytes: the receive interrupt only queues them; the main loop decodes COBS and checks the
 * CRC byte by byte as they come (streaming receiver of protocol.c, no second pass) */
static uint8_t rx_buf[RX_SIZE];
static volatile uint8_t rx_head, rx_tail;
static volatile uint16_t rx_overflows;
static uint8_t rx_raw[PROTO_MAX_WIRE];
static proto_rx_t rx_state;
static uint8_t tx_buf[TX_SIZE];
static volatile uint8_t tx_head, tx_tail;

static proto_config_t cfg;
static volatile uint8_t configured, armed, running, estop_latched, pending;
static volatile uint8_t st_flags;
static volatile uint32_t rd_index, wr_index, remaining, pend_index;
static uint32_t run_start, run_n;
static volatile uint32_t time_us, last_host_us;
static volatile uint8_t host_seen, tick_alive, in_tick;
static volatile uint16_t tick_overruns;
static uint32_t period_us = 1000000UL / RIG_DEFAULT_FS;
static uint32_t hb_acc_us;
static uint8_t pid_countdown;
static int16_t motor;
static volatile int16_t last_piv_counts;
static int32_t pid_integral;
static int16_t pid_prev;
static uint16_t tx_seq;
static volatile uint16_t rx_rejected;
static int16_t lim_act_lo, lim_act_hi, lim_piv_lo, lim_piv_hi; /* limits, 10 um units */
uint8_t mcusr_mirror __attribute__((section(".noinit")));

/* Clear the reset cause and stop the watchdog before anything else (avr-libc wdt.h note). */
void early_wdt_off(void) __attribute__((naked, used, section(".init3")));
void early_wdt_off(void)
{
    mcusr_mirror = MCUSR;
    MCUSR = 0;
    wdt_disable();
}

/* ------------------------------------------------------------------ hardware */

static uint16_t adc_read(uint8_t ch)
{
    ADMUX = (uint8_t)((1 << REFS0) | ch);           /* AVcc reference */
    ADCSRA |= (1 << ADSC);
    while (ADCSRA & (1 << ADSC)) {
    }
    return ADC;
}

static void motor_write(int16_t pwm)
{
    uint16_t mag = (uint16_t)(pwm < 0 ? -pwm : pwm);
    uint8_t duty = (uint8_t)(((uint32_t)mag * 255u) / cfg.pwm_max);
    if (pwm >= 0) {
        PORTD |= (1 << PD7);
    } else {
        PORTD &= (uint8_t)~(1 << PD7);
    }
    if (duty == 0 || duty == 255) {                   /* 0 % / 100 %: plain output, no PWM */
        TCCR0A &= (uint8_t)~(1 << COM0B1);
        if (duty) {
            PORTD |= (1 << PD5);
        } else {
            PORTD &= (uint8_t)~(1 << PD5);
        }
    } else {
        OCR0B = duty;
        TCCR0A |= (1 << COM0B1);
    }
}

static void dac_write(int16_t act_units)
{
    int32_t d = (int32_t)act_units - RIG_DAC_MIN_UNITS;
    uint32_t code;
    if (d < 0) {
        d = 0;
    }
    code = ((uint32_t)d * RIG_DAC_Q8) >> 8;
    if (code > 65535UL) {
        code = 65535UL;
    }
    PORTB &= (uint8_t)~(1 << PB2);                    /* chip select */
    SPDR = 0x00;
    while (!(SPSR & (1 << SPIF))) {
    }
    SPDR = (uint8_t)(code >> 8);
    while (!(SPSR & (1 << SPIF))) {
    }
    SPDR = (uint8_t)code;
    while (!(SPSR & (1 << SPIF))) {
    }
    PORTB |= (1 << PB2);
}

/* Pivot setpoint (10 um units) -> potentiometer counts, rounded and clipped. */
static int16_t pivot_counts(int16_t units)
{
    int32_t d = (int32_t)units * PROTO_SETPOINT_UNIT_UM - RIG_PIVOT_OFFSET_UM;
    int32_t c;
    if (d <= 0) {
        return 0;
    }
    c = (int32_t)(((uint32_t)d * RIG_PIVOT_INV_Q20 + (1UL << 19)) >> 20);
    return (int16_t)(c > 1023 ? 1023 : c);
}

/* Integer pivot PID, PROTOCOL.md Sec. 4 (derivative on measurement, clamped integral).
 * 32-bit arithmetic: CONFIG refuses gains whose terms could overflow (see config_ok). */
static int16_t pid_update(int16_t setpoint, int16_t meas)
{
    int32_t e = (int32_t)setpoint - meas;
    int32_t u;
    pid_integral += e;
    if (pid_integral > cfg.integral_limit) {
        pid_integral = cfg.integral_limit;
    } else if (pid_integral < -cfg.integral_limit) {
        pid_integral = -cfg.integral_limit;
    }
    u = (int32_t)cfg.kp * e + (int32_t)cfg.ki * pid_integral
        + (int32_t)cfg.kd * ((int32_t)pid_prev - meas);
    pid_prev = meas;
    u >>= cfg.shift;                                  /* arithmetic shift: floor */
    if (u > (int32_t)cfg.pwm_max) {
        u = cfg.pwm_max;
    } else if (u < -(int32_t)cfg.pwm_max) {
        u = -(int32_t)cfg.pwm_max;
    }
    return (int16_t)u;
}

static void timer_set_rate(uint16_t fs)
{
    TCCR1A = 0;
    TCCR1B = (1 << WGM12) | (1 << CS11);              /* CTC, clk/8 = 2 MHz */
    OCR1A = (uint16_t)(2000000UL / fs - 1);
    TCNT1 = 0;
    TIMSK1 |= (1 << OCIE1A);
    period_us = 1000000UL / fs;
}

/* ------------------------------------------------------------------ control interrupt */

static event_t *ev_slot(void)
{
    uint8_t next = (uint8_t)((ev_head + 1) & (EV_SIZE - 1));
    if (next == ev_tail) {
        ev_dropped++;
        return 0;
    }
    return &ev_buf[ev_head];
}

static void ev_commit(uint8_t type, uint8_t len)
{
    ev_buf[ev_head].type = type;
    ev_buf[ev_head].len = len;
    ev_head = (uint8_t)((ev_head + 1) & (EV_SIZE - 1));
}

static void push_fault(uint8_t code, uint32_t index, int32_t detail)
{
    event_t *e = ev_slot();
    if (e) {
        ev_commit(PROTO_FAULT, proto_pack_fault(e->payload, code, index, detail));
    }
}

static void halt(void)
{
    armed = running = pending = 0;
    remaining = 0;
    motor = 0;
    motor_write(0);
    dac_write(0);
    st_flags &= (uint8_t)~PROTO_FLAG_RUNNING;
}

static void tick(void)
{
    uint16_t a_piv, a_force, a_act;
    int32_t piv_um, force_mn, act_um;
    uint8_t pins, flags;
    event_t *e;

    time_us += period_us;
    a_piv = adc_read(0);
    a_force = adc_read(1);
    a_act = adc_read(2);
    last_piv_counts = (int16_t)a_piv;
    piv_um = RIG_PIVOT_OFFSET_UM + (int32_t)(((uint32_t)a_piv * RIG_PIVOT_SCALE_Q12) >> 12);
    force_mn = RIG_FORCE_OFFSET_MN + (int32_t)(((uint32_t)a_force * RIG_FORCE_SCALE_Q12) >> 12);
    act_um = RIG_ACT_OFFSET_UM + (int32_t)(((uint32_t)a_act * RIG_ACT_SCALE_Q12) >> 12);
    pins = PIND;

    if ((pins & (1 << PD2)) && !estop_latched) {      /* e-stop contact opened */
        halt();
        estop_latched = 1;
        st_flags |= PROTO_FLAG_ESTOP;
        push_fault(PROTO_FAULT_ESTOP, rd_index, 1);
    }
    flags = st_flags;
    if (!(pins & (1 << PD3)) || !(pins & (1 << PD4))) {
        flags |= PROTO_FLAG_PIVOT_LIMIT;
    }
    if (configured) {
        if (motor >= (int16_t)cfg.pwm_max || motor <= -(int16_t)cfg.pwm_max) {
            flags |= PROTO_FLAG_SATURATED;
        }
        if (act_um < cfg.act_min_um || act_um > cfg.act_max_um) {
            flags |= PROTO_FLAG_ACT_LIMIT;
        }
    }

    /* the sample of the setpoint executed last tick, measured now (end of its period) */
    if (pending) {
        pending = 0;
        e = ev_slot();
        if (e) {
            proto_sample_t s;
            s.index = pend_index;
            s.time_us = time_us;
            s.act_um = act_um;
            s.force_mn = force_mn;
            s.pivot_um = piv_um;
            s.motor = motor;
            s.flags = flags;
            ev_commit(PROTO_SAMPLE, proto_pack_sample(e->payload, &s));
        }
        remaining--;
        if (piv_um < cfg.pivot_min_um - TRAVEL_MARGIN_UM
            || piv_um > cfg.pivot_max_um + TRAVEL_MARGIN_UM) {
            halt();
            push_fault(PROTO_FAULT_TRAVEL, pend_index, piv_um);
        } else if (remaining == 0) {
            halt();
        }
    }

    /* host-silence watchdog (PROTOCOL.md Sec. 4) */
    if ((armed || running) && host_seen) {
        uint32_t silence = time_us - last_host_us;
        if (silence > (uint32_t)cfg.watchdog_ms * 1000UL) {
            halt();
            st_flags |= PROTO_FLAG_WATCHDOG;
            push_fault(PROTO_FAULT_WATCHDOG, rd_index, (int32_t)(silence / 1000UL));
        }
    }
    if (armed) {
        uint32_t need = remaining < CAPACITY / 2 ? remaining : CAPACITY / 2;
        if (wr_index - rd_index >= need) {
            armed = 0;
            running = 1;
            pid_countdown = 0;
            st_flags |= PROTO_FLAG_RUNNING;
        }
    }
    if (running) {
        if (wr_index == rd_index) {
            halt();
            st_flags |= PROTO_FLAG_UNDERRUN;
            push_fault(PROTO_FAULT_UNDERRUN, rd_index, 0);
        } else {
            const setpoint_t *sp = &sp_buf[rd_index & (CAPACITY - 1)];
            dac_write(sp->act);
            if (pid_countdown == 0) {                /* every control_divider ticks */
                pid_countdown = cfg.control_divider;
                motor = pid_update(pivot_counts(sp->piv), (int16_t)a_piv);
                motor_write(motor);
            }
            pid_countdown--;
            pend_index = rd_index;
            pending = 1;
            rd_index++;
        }
    }

    hb_acc_us += period_us;
    if (hb_acc_us >= HEARTBEAT_US) {
        hb_acc_us -= HEARTBEAT_US;
        e = ev_slot();
        if (e) {
            flags = (uint8_t)((flags & (PROTO_FLAG_PIVOT_LIMIT | PROTO_FLAG_SATURATED
                                        | PROTO_FLAG_ACT_LIMIT)) | st_flags); /* after faults */
            ev_commit(PROTO_DEVICE_HEARTBEAT,
                      proto_pack_device_heartbeat(e->payload, time_us, flags, wr_index, rd_index,
                                                  (uint16_t)(CAPACITY - (wr_index - rd_index))));
        }
    }
    tick_alive = 1;
}

/* Interrupts stay enabled inside the tick so the UART never overruns; the tick itself does not
 * nest (an overrun is counted and that tick skipped). */
ISR(TIMER1_COMPA_vect, ISR_NOBLOCK)
{
    if (in_tick) {
        tick_overruns++;
        return;
    }
    in_tick = 1;
    PORTB |= (1 << PB0);
    tick();
    PORTB &= (uint8_t)~(1 << PB0);
    in_tick = 0;
}

/* ------------------------------------------------------------------ UART */

ISR(USART_RX_vect)
{
    uint8_t b = UDR0;
    uint8_t next = (uint8_t)((rx_head + 1) & (RX_SIZE - 1));
    if (next != rx_tail) {
        rx_buf[rx_head] = b;
        rx_head = next;
    } else {
        rx_overflows++;
    }
}

ISR(USART_UDRE_vect)
{
    if (tx_tail != tx_head) {
        UDR0 = tx_buf[tx_tail];
        tx_tail = (uint8_t)((tx_tail + 1) & (TX_SIZE - 1));
    } else {
        UCSR0B &= (uint8_t)~(1 << UDRIE0);
    }
}

static void send_frame(uint8_t type, const uint8_t *payload, uint8_t len)
{
    static uint8_t wire[PROTO_MAX_WIRE + 1];
    size_t n = proto_encode_frame(type, tx_seq, payload, len, wire), i;
    tx_seq++;
    for (i = 0; i < n; i++) {
        uint8_t next = (uint8_t)((tx_head + 1) & (TX_SIZE - 1));
        while (next == tx_tail) {                     /* wait for the line; control runs on */
            wdt_reset();
        }
        tx_buf[tx_head] = wire[i];
        tx_head = next;
        UCSR0B |= (1 << UDRIE0);
    }
}

/* ------------------------------------------------------------------ host messages */

static uint8_t reply[PROTO_LEN_CONFIG];

static void snapshot(uint32_t *wr, uint32_t *rd)
{
    uint8_t s = SREG;
    cli();
    *wr = wr_index;
    *rd = rd_index;
    SREG = s;
}

static void send_ack(uint8_t type, uint16_t seq)
{
    uint32_t wr, rd;
    snapshot(&wr, &rd);
    send_frame(PROTO_ACK, reply,
               proto_pack_ack(reply, type, seq, wr, rd, (uint16_t)(CAPACITY - (wr - rd))));
}

static void send_nack(uint8_t type, uint16_t seq, uint8_t reason, uint32_t expected)
{
    send_frame(PROTO_NACK, reply, proto_pack_nack(reply, type, seq, reason, expected));
}

static void send_hello(void)
{
    send_frame(PROTO_HELLO, reply,
               proto_pack_hello(reply, FW_MAJOR, FW_MINOR, FW_PATCH, RIG_ID, RIG_DEFAULT_FS,
                                N_CHANNELS, CAPACITY));
}

static uint8_t config_ok(const proto_config_t *c)
{
    return c->sample_rate_hz >= 100 && c->sample_rate_hz <= RIG_MAX_FS
        && 1000000UL % c->sample_rate_hz == 0
        && c->control_divider >= 1 && c->control_divider <= 100
        && c->pwm_max >= 1 && c->pwm_max <= 1023 && c->shift <= 24 && c->integral_limit >= 0
        && c->act_min_um < c->act_max_um && c->pivot_min_um < c->pivot_max_um
        && c->act_min_um >= -RIG_ACT_STROKE_UM && c->act_max_um <= RIG_ACT_STROKE_UM
        && c->pivot_min_um >= RIG_PIVOT_HARD_MIN_UM && c->pivot_max_um <= RIG_PIVOT_HARD_MAX_UM
        && c->watchdog_ms >= 5
        /* the PID sum fits int32: (kp + kd) * 1023 + ki * integral_limit < 2^31 */
        && ((uint32_t)c->kp + c->kd) * 1023UL
               + (uint32_t)c->ki * (uint32_t)(c->integral_limit > 32767L ? 32767L
                                                                         : c->integral_limit)
           < 0x7FFFFFFFUL
        && (c->ki == 0 || c->integral_limit <= 0x7FFFFFFFL / (int32_t)c->ki / 2);
}

static int32_t units_floor(int32_t um)
{
    int32_t q = um / PROTO_SETPOINT_UNIT_UM;
    return (um % PROTO_SETPOINT_UNIT_UM < 0) ? q - 1 : q;
}

static int32_t units_ceil(int32_t um)
{
    return -units_floor(-um);
}

static void on_config(const proto_frame_t *f)
{
    proto_config_t c;
    proto_unpack_config(f->payload, &c);
    if (armed || running) {
        send_nack(f->type, f->seq, PROTO_NACK_BAD_STATE, wr_index);
        return;
    }
    if (!config_ok(&c)) {
        send_nack(f->type, f->seq, PROTO_NACK_BAD_CONFIG, wr_index);
        return;
    }
    cli();
    cfg = c;
    /* inclusive limits in setpoint units: ceil(min / 10), floor(max / 10) */
    lim_act_lo = (int16_t)units_ceil(c.act_min_um);
    lim_act_hi = (int16_t)units_floor(c.act_max_um);
    lim_piv_lo = (int16_t)units_ceil(c.pivot_min_um);
    lim_piv_hi = (int16_t)units_floor(c.pivot_max_um);
    timer_set_rate(c.sample_rate_hz);
    pid_integral = 0;
    pid_prev = last_piv_counts;
    estop_latched = 0;
    st_flags = PROTO_FLAG_CONFIGURED;
    configured = 1;
    sei();
    send_ack(f->type, f->seq);
}

static void on_start(const proto_frame_t *f)
{
    uint32_t s, n;
    proto_unpack_start(f->payload, &s, &n);
    if ((armed || running) && s == run_start && n == run_n) {
        send_ack(f->type, f->seq);                    /* the same START again: ACK lost */
        return;
    }
    if (!configured || estop_latched || armed || running) {
        send_nack(f->type, f->seq, PROTO_NACK_BAD_STATE, wr_index);
        return;
    }
    cli();
    run_start = s;
    run_n = n;
    wr_index = rd_index = s;
    remaining = n;
    pending = 0;
    armed = n > 0;
    st_flags &= (uint8_t)~(PROTO_FLAG_WATCHDOG | PROTO_FLAG_UNDERRUN);
    sei();
    send_ack(f->type, f->seq);
}

static void on_setpoints(const proto_frame_t *f)
{
    uint32_t first, wr, rd, n, k;
    uint8_t count, skip;
    proto_unpack_setpoints(f->payload, &first, &count);
    snapshot(&wr, &rd);
    if (!configured || !(armed || running)) {
        send_nack(f->type, f->seq, PROTO_NACK_BAD_STATE, wr);
        return;
    }
    if (first > wr) {
        send_nack(f->type, f->seq, PROTO_NACK_BAD_INDEX, wr);
        return;
    }
    if (wr - first >= count) {
        send_ack(f->type, f->seq);                    /* a duplicate: already stored */
        return;
    }
    skip = (uint8_t)(wr - first);
    n = count - skip;
    if (n > CAPACITY - (wr - rd)) {
        send_nack(f->type, f->seq, PROTO_NACK_OVERFLOW, wr);
        return;
    }
    for (k = 0; k < n; k++) {                         /* travel limits: refuse the whole chunk */
        const uint8_t *p = f->payload + 5 + 4 * (skip + k);
        int16_t a = (int16_t)proto_get_u16(p);
        int16_t v = (int16_t)proto_get_u16(p + 2);
        uint8_t bad_a = a < lim_act_lo || a > lim_act_hi;
        if (bad_a || v < lim_piv_lo || v > lim_piv_hi) {
            int32_t um = (int32_t)(bad_a ? a : v) * PROTO_SETPOINT_UNIT_UM;
            send_frame(PROTO_FAULT, reply, proto_pack_fault(reply, PROTO_FAULT_LIMIT, wr + k, um));
            send_nack(f->type, f->seq, PROTO_NACK_LIMIT, wr + k);
            return;
        }
    }
    for (k = 0; k < n; k++) {
        const uint8_t *p = f->payload + 5 + 4 * (skip + k);
        setpoint_t *s = &sp_buf[(wr + k) & (CAPACITY - 1)];
        s->act = (int16_t)proto_get_u16(p);
        s->piv = (int16_t)proto_get_u16(p + 2);
    }
    cli();
    wr_index = wr + n;
    sei();
    send_ack(f->type, f->seq);
}

static void on_frame(const proto_frame_t *f)
{
    cli();
    last_host_us = time_us;
    host_seen = 1;
    sei();
    switch (f->type) {
    case PROTO_HELLO_REQ:
        send_hello();
        break;
    case PROTO_HEARTBEAT:
        break;
    case PROTO_ESTOP:
        cli();
        halt();
        estop_latched = 1;
        st_flags |= PROTO_FLAG_ESTOP;
        sei();
        send_ack(f->type, f->seq);
        send_frame(PROTO_FAULT, reply, proto_pack_fault(reply, PROTO_FAULT_ESTOP, rd_index, 0));
        break;
    case PROTO_STOP:
        cli();
        halt();
        sei();
        send_ack(f->type, f->seq);
        break;
    case PROTO_CONFIG:
        on_config(f);
        break;
    case PROTO_START:
        on_start(f);
        break;
    case PROTO_SETPOINTS:
        on_setpoints(f);
        break;
    default:                                          /* a device-to-host type from the host */
        send_nack(f->type, f->seq, PROTO_NACK_UNKNOWN_TYPE, wr_index);
        break;
    }
}

/* ------------------------------------------------------------------ Arduino entry points */

void setup(void)
{
    /* outputs: motor PWM + direction, busy, DAC chip select, MOSI, SCK */
    DDRD |= (1 << PD5) | (1 << PD7);
    DDRB |= (1 << PB0) | (1 << PB2) | (1 << PB3) | (1 << PB5);
    PORTB |= (1 << PB2);
    /* inputs with pull-ups: e-stop, limit switches */
    DDRD &= (uint8_t)~((1 << PD2) | (1 << PD3) | (1 << PD4));
    PORTD |= (1 << PD2) | (1 << PD3) | (1 << PD4);
    SPCR = (1 << SPE) | (1 << MSTR);                  /* SPI master, mode 0, clk/2 */
    SPSR = (1 << SPI2X);
    ADCSRA = (1 << ADEN) | (1 << ADPS2) | (1 << ADPS0);  /* clk/32: 26 us per conversion */
    cfg.pwm_max = 255;
    cfg.control_divider = 1;
    motor_write(0);
    dac_write(0);
    /* UART: 500 kbaud (U2X, UBRR = 3), 8N1, receive interrupt. 500 kbaud rather than 1 Mbaud:
     * decoding COBS + CRC-32 costs the Uno ~250 cycles per received byte, more than the 160 a
     * 1 Mbaud byte takes, so a host's burst of setpoint chunks would overrun the receive ring;
     * 500 kbaud still carries 1 kHz of samples (PROTOCOL.md Sec. 1). */
    UCSR0A = (1 << U2X0);
    UBRR0 = (uint16_t)(F_CPU / (8UL * UART_BAUD) - 1);
    UCSR0C = (1 << UCSZ01) | (1 << UCSZ00);
    proto_rx_init(&rx_state, rx_raw);
    UCSR0B = (1 << RXEN0) | (1 << TXEN0) | (1 << RXCIE0);
    cli();
    timer_set_rate(RIG_DEFAULT_FS);
    sei();
    send_hello();                                     /* unsolicited HELLO, sequence 0 */
    if (mcusr_mirror & (1 << WDRF)) {                 /* the hardware watchdog reset us */
        send_frame(PROTO_FAULT, reply,
                   proto_pack_fault(reply, PROTO_FAULT_RESET, 0, mcusr_mirror));
    }
    wdt_enable(WDTO_250MS);
}

void loop(void)
{
    if (tick_alive) {                                 /* feed the AVR watchdog only while the */
        tick_alive = 0;                               /* control interrupt is alive too */
        wdt_reset();
    }
    /* samples first: at most one host frame per pass, so a burst of host bytes (which the
     * host resends when lost) never starves the sample queue (which is lost for good) */
    while (rx_tail != rx_head) {
        proto_frame_t f;
        int st = proto_rx_byte(&rx_state, rx_buf[rx_tail], &f);
        rx_tail = (uint8_t)((rx_tail + 1) & (RX_SIZE - 1));
        if (st == PROTO_OK) {
            on_frame(&f);
            break;
        }
        if (st != PROTO_RX_MORE) {
            rx_rejected++;
        }
    }
    while (ev_tail != ev_head) {
        event_t *e = &ev_buf[ev_tail];
        send_frame(e->type, e->payload, e->len);
        ev_tail = (uint8_t)((ev_tail + 1) & (EV_SIZE - 1));
    }
}
