/* impbench rig emulator harness: the Uno firmware on simavr, its UART on a pseudo-terminal,
 * the lever physics in lock-step with emulated time.
 *
 * Usage: harness FIRMWARE.elf [--realtime] [--slack-ms MS] [--link PATH] [--step-cycles N]
 *                             [--duration S]
 *
 * Physics coupling (deterministic lock-step): the physics process (Python, plants.lever) is
 * our parent, on stdin/stdout. Whenever the firmware starts an ADC conversion of channel 0
 * (the first of each control tick), the emulator stops and asks the physics to advance by
 * n = round((cycle - physics_cycle) / step_cycles) fixed steps under the current outputs
 * (motor PWM from OCR0B/COM0B1/PORTD5 + direction PD7, actuator DAC code from SPI); the
 * answer is the three ADC inputs in millivolts plus the e-stop and limit-switch inputs. The
 * physics therefore sees the same emulated time and outputs whatever the host does, and the
 * ADC readings depend only on emulated time.
 *
 *   request  (harness -> physics, 20 B): 'S' 0 0 0 | n_steps:u32 | cycle:u64 | pwm:i16 | dac:u16
 *   reply    (physics -> harness,  8 B): mv0:u16 | mv1:u16 | mv2:u16 | inputs:u8 | cmd:u8
 *            inputs bit 0 e-stop open, 1 lower limit switch closed, 2 upper closed;
 *            cmd 1 = stop the emulation.
 * At start the harness writes one text line "IMPBENCH-HARNESS 1 <pty path>\n" to stdout; at
 * exit one JSON line of statistics to stderr.
 *
 * Pacing: --realtime keeps emulated time at or behind wall time. Otherwise emulated time may
 * run ahead of the wall clock by at most --slack-ms since the last byte from the host: it
 * runs free while the host talks and falls back to real time when the host goes quiet, so the
 * firmware's host-silence watchdog still measures real silence.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <avr_adc.h>
#include <avr_ioport.h>
#include <avr_spi.h>
#include <avr_uart.h>
#include <sim_avr.h>
#include <sim_elf.h>

#define F_CPU 16000000UL
/* ATmega328P data-space addresses (I/O address + 0x20) */
#define A_PORTD 0x2B
#define A_TCCR0A 0x44
#define A_OCR0B 0x48
#define COM0B1_BIT 5

static avr_t *avr;
static avr_irq_t *uart_in, *adc_in, *pin_d2, *pin_d3, *pin_d4;
static int pty_master = -1, pty_slave = -1;
static int realtime = 0;
static double slack_s = 0.02, duration_s = 0.0;
static uint64_t step_cycles = 6400, phys_cycle = 0, phys_steps = 0, phys_calls = 0;
static uint16_t mv[3];
static uint8_t inputs = 0xFF, stop_requested = 0, xon = 1;
static volatile sig_atomic_t got_signal = 0;
static int phys_fd = -1; /* the physics channel: the original stdout */

/* host -> device bytes; kept small like a USB-serial bridge's buffer, so a host that sends
 * faster than the UART carries is held back by the pty instead of queueing seconds of data */
#define IN_PENDING_MAX 128
static uint8_t in_buf[1 << 16];
static size_t in_head = 0, in_tail = 0;
/* device -> host bytes */
static uint8_t out_buf[1 << 20];
static size_t out_len = 0;
static uint64_t out_dropped = 0, bytes_in = 0, bytes_out = 0;

/* DAC (SPI) and busy pin */
static uint8_t dac_bytes[3], dac_n = 0;
static uint16_t dac_code = 32768;
static uint64_t busy_rise = 0, busy_sum = 0, busy_max = 0, busy_n = 0, busy_first = 0,
                busy_last = 0;

static uint16_t sp_min = 0xFFFF; /* lowest stack pointer seen (sampled at I/O events) */
static double wall_start, wall_last_host;

static void sample_sp(void)
{
    uint16_t sp = (uint16_t)(avr->data[0x5D] | (avr->data[0x5E] << 8)); /* SPL, SPH */
    if (sp < sp_min) {
        sp_min = sp;
    }
}
static uint64_t cycle_last_host = 0;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "harness: %s\n", msg);
    exit(2);
}

static void read_exact(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            exit(0); /* physics went away: stop quietly */
        }
        p += r;
        n -= (size_t)r;
    }
}

static void write_exact(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            exit(0);
        }
        p += r;
        n -= (size_t)r;
    }
}

/* ---------------------------------------------------------------- physics lock-step */

static int16_t motor_pwm8(void)
{
    uint8_t portd = avr->data[A_PORTD];
    int16_t mag;
    if (avr->data[A_TCCR0A] & (1 << COM0B1_BIT)) {
        mag = avr->data[A_OCR0B];
    } else {
        mag = (portd & (1 << 5)) ? 255 : 0;
    }
    return (portd & (1 << 7)) ? mag : (int16_t)-mag;
}

static void set_inputs(uint8_t in)
{
    /* D2 e-stop: HIGH when the contact is open; D3/D4 limit switches: LOW when closed */
    uint8_t value = (uint8_t)(((in & 1) ? 1 << 2 : 0) | ((in & 2) ? 0 : 1 << 3)
                              | ((in & 4) ? 0 : 1 << 4));
    avr_ioport_external_t ext = {.name = 'D', .mask = 0x1C, .value = value};
    if (in == inputs) {
        return;
    }
    inputs = in;
    avr_ioctl(avr, AVR_IOCTL_IOPORT_SET_EXTERNAL('D'), &ext);
    avr_raise_irq(pin_d2, (value >> 2) & 1);
    avr_raise_irq(pin_d3, (value >> 3) & 1);
    avr_raise_irq(pin_d4, (value >> 4) & 1);
}

static void physics_step(uint32_t n)
{
    uint8_t req[20] = {'S', 0, 0, 0}, rep[8];
    int16_t pwm = motor_pwm8();
    uint64_t cyc = avr->cycle;
    memcpy(req + 4, &n, 4);
    memcpy(req + 8, &cyc, 8);
    memcpy(req + 16, &pwm, 2);
    memcpy(req + 18, &dac_code, 2);
    write_exact(phys_fd, req, sizeof req);
    read_exact(STDIN_FILENO, rep, sizeof rep);
    memcpy(mv, rep, 6);
    set_inputs(rep[6]);
    if (rep[7] == 1) {
        stop_requested = 1;
    }
    phys_steps += n;
    phys_calls++;
}

static void on_adc_trigger(struct avr_irq_t *irq, uint32_t value, void *param)
{
    union {
        avr_adc_mux_t mux;
        uint32_t v;
    } e = {.v = value};
    (void)irq;
    (void)param;
    sample_sp();
    if (e.mux.kind == ADC_MUX_SINGLE && e.mux.src == 0) {
        uint64_t elapsed = avr->cycle - phys_cycle;
        uint32_t n = (uint32_t)((elapsed + step_cycles / 2) / step_cycles);
        if (n > 0) {
            physics_step(n);
            phys_cycle += (uint64_t)n * step_cycles;
        }
    }
    for (int ch = 0; ch < 3; ch++) {
        avr_raise_irq(adc_in + ch, mv[ch]);
    }
}

/* ---------------------------------------------------------------- outputs */

static void on_spi_out(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    if (dac_n < 3) {
        dac_bytes[dac_n++] = (uint8_t)value;
    }
    if (dac_n == 3) {
        dac_code = (uint16_t)((dac_bytes[1] << 8) | dac_bytes[2]);
        dac_n = 4; /* ignore extra bytes until the next chip select */
    }
}

static void on_dac_cs(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    if (!value) {
        dac_n = 0;
    }
}

static void on_busy(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    sample_sp();
    if (value) {
        busy_rise = avr->cycle;
        if (!busy_first) {
            busy_first = avr->cycle;
        }
    } else if (busy_rise) {
        uint64_t d = avr->cycle - busy_rise;
        busy_sum += d;
        busy_max = d > busy_max ? d : busy_max;
        busy_n++;
        busy_last = busy_rise;
        busy_rise = 0;
    }
}

static void on_uart_out(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    sample_sp();
    bytes_out++;
    if (out_len < sizeof out_buf) {
        out_buf[out_len++] = (uint8_t)value;
    } else {
        out_dropped++;
    }
}

static void feed_uart(void)
{
    while (xon && in_tail != in_head) {
        uint8_t b = in_buf[in_tail];
        in_tail = (in_tail + 1) & (sizeof in_buf - 1);
        avr_raise_irq(uart_in, b);
    }
}

static void on_xon(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    (void)value;
    xon = 1;
    feed_uart();
}

static void on_xoff(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    (void)value;
    xon = 0;
}

/* ---------------------------------------------------------------- pty and pacing */

static int read_host(void)
{
    int got = 0;
    for (;;) {
        size_t pending = (in_head - in_tail) & (sizeof in_buf - 1);
        size_t room = pending < IN_PENDING_MAX ? IN_PENDING_MAX - pending : 0;
        size_t chunk = sizeof in_buf - in_head;
        ssize_t r;
        if (!room) {
            break;
        }
        if (chunk > room) {
            chunk = room;
        }
        r = read(pty_master, in_buf + in_head, chunk);
        if (r <= 0) {
            break;
        }
        in_head = (in_head + (size_t)r) & (sizeof in_buf - 1);
        bytes_in += (uint64_t)r;
        got = 1;
    }
    if (got) {
        cycle_last_host = avr->cycle;
        wall_last_host = now_s();
    }
    return got;
}

static void write_host(void)
{
    size_t done = 0;
    while (done < out_len) {
        ssize_t w = write(pty_master, out_buf + done, out_len - done);
        if (w <= 0) {
            break;
        }
        done += (size_t)w;
    }
    if (done) {
        memmove(out_buf, out_buf + done, out_len - done);
        out_len -= done;
    }
}

static void wait_fd(double seconds)
{
    struct pollfd p = {.fd = pty_master, .events = POLLIN};
    int ms = (int)(seconds * 1000.0);
    if (ms > 0) {
        poll(&p, 1, ms);
    }
}

static avr_cycle_count_t on_service(avr_t *a, avr_cycle_count_t when, void *param)
{
    double emu, wall;
    (void)param;
    read_host();
    feed_uart();
    write_host();
    emu = (double)a->cycle / F_CPU;
    if (realtime) {
        while ((wall = now_s() - wall_start) < emu - 0.0005 && !got_signal) {
            wait_fd(emu - wall);
            if (read_host()) {
                feed_uart();
            }
        }
    } else {
        for (;;) {
            double ahead = (double)(a->cycle - cycle_last_host) / F_CPU
                           - (now_s() - wall_last_host);
            if (ahead <= slack_s || got_signal) {
                break;
            }
            wait_fd(ahead - slack_s + 0.0005);
            if (read_host()) {
                feed_uart();
            }
            write_host();
        }
    }
    if (duration_s > 0 && emu >= duration_s) {
        stop_requested = 1;
    }
    return when + F_CPU / 2000; /* every 0.5 ms of emulated time */
}

static void on_signal(int sig)
{
    (void)sig;
    got_signal = 1;
}

int main(int argc, char **argv)
{
    elf_firmware_t fw;
    const char *elf = NULL, *link = NULL;
    char name[256];
    struct termios tio;
    uint32_t flags = 0;
    double wall_end;
    int state = cpu_Running;

    memset(&fw, 0, sizeof fw);
    /* simavr logs to stdout: keep the real stdout for the physics channel only */
    phys_fd = dup(STDOUT_FILENO);
    dup2(STDERR_FILENO, STDOUT_FILENO);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--realtime")) {
            realtime = 1;
        } else if (!strcmp(argv[i], "--slack-ms") && i + 1 < argc) {
            slack_s = atof(argv[++i]) / 1000.0;
        } else if (!strcmp(argv[i], "--link") && i + 1 < argc) {
            link = argv[++i];
        } else if (!strcmp(argv[i], "--step-cycles") && i + 1 < argc) {
            step_cycles = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--duration") && i + 1 < argc) {
            duration_s = atof(argv[++i]);
        } else if (argv[i][0] != '-' && !elf) {
            elf = argv[i];
        } else {
            fprintf(stderr, "harness: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (!elf || step_cycles == 0) {
        die("usage: harness FIRMWARE.elf [--realtime] [--slack-ms MS] [--link PATH] "
            "[--step-cycles N] [--duration S]");
    }
    if (elf_read_firmware(elf, &fw) != 0) {
        die("cannot read the firmware ELF");
    }
    strcpy(fw.mmcu, "atmega328p");
    fw.frequency = F_CPU;
    avr = avr_make_mcu_by_name(fw.mmcu);
    if (!avr) {
        die("simavr has no atmega328p core");
    }
    avr_init(avr);
    avr_load_firmware(avr, &fw);
    avr->avcc = avr->vcc = avr->aref = 5000;
    avr->log = LOG_ERROR;

    /* UART0 <-> pty (raw), the slave end kept open so the master never sees EIO */
    if (openpty(&pty_master, &pty_slave, name, NULL, NULL) != 0) {
        die("openpty failed");
    }
    tcgetattr(pty_slave, &tio);
    cfmakeraw(&tio);
    tcsetattr(pty_slave, TCSANOW, &tio);
    fcntl(pty_master, F_SETFL, fcntl(pty_master, F_GETFL) | O_NONBLOCK);
    if (link) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", link);
        unlink(tmp);
        if (symlink(name, tmp) != 0 || rename(tmp, link) != 0) {
            die("cannot create the --link symlink");
        }
    }
    avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
    flags &= ~AVR_UART_FLAG_STDIO;
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
    uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
                            on_uart_out, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON),
                            on_xon, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF),
                            on_xoff, NULL);
    /* ADC inputs, SPI DAC, busy pin, e-stop and limit inputs */
    adc_in = avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_OUT_TRIGGER),
                            on_adc_trigger, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_SPI_GETIRQ(0), SPI_IRQ_OUTPUT),
                            on_spi_out, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('B'), 2), on_dac_cs,
                            NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('B'), 0), on_busy, NULL);
    pin_d2 = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), 2);
    pin_d3 = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), 3);
    pin_d4 = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), 4);
    set_inputs(0); /* e-stop contact closed, limit switches open */

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    {
        char hello[512];
        int n = snprintf(hello, sizeof hello, "IMPBENCH-HARNESS 1 %s\n", name);
        write_exact(phys_fd, hello, (size_t)n);
    }

    wall_start = wall_last_host = now_s();
    avr_cycle_timer_register(avr, F_CPU / 2000, on_service, NULL);
    while (!got_signal && !stop_requested && state != cpu_Done && state != cpu_Crashed) {
        state = avr_run(avr);
    }
    write_host();
    wall_end = now_s();
    {
        double emu = (double)avr->cycle / F_CPU, wall = wall_end - wall_start;
        double span = busy_n > 1 ? (double)(busy_last - busy_first) / F_CPU : 0.0;
        fprintf(stderr,
                "{\"emulated_s\": %.6f, \"wall_s\": %.6f, \"speed\": %.4f, \"cycles\": %llu, "
                "\"ticks\": %llu, \"tick_rate_hz\": %.3f, \"tick_mean_us\": %.3f, "
                "\"tick_max_us\": %.3f, \"physics_steps\": %llu, \"physics_calls\": %llu, "
                "\"bytes_in\": %llu, \"bytes_out\": %llu, \"out_dropped\": %llu, "
                "\"stack_max_bytes\": %d, \"state\": %d, \"pty\": \"%s\"}\n",
                emu, wall, wall > 0 ? emu / wall : 0.0, (unsigned long long)avr->cycle,
                (unsigned long long)busy_n, span > 0 ? (busy_n - 1) / span : 0.0,
                busy_n ? 1e6 * busy_sum / busy_n / F_CPU : 0.0, 1e6 * busy_max / F_CPU,
                (unsigned long long)phys_steps, (unsigned long long)phys_calls,
                (unsigned long long)bytes_in, (unsigned long long)bytes_out,
                (unsigned long long)out_dropped, sp_min == 0xFFFF ? 0 : 0x8FF - sp_min, state,
                name);
    }
    if (link) {
        unlink(link);
    }
    return state == cpu_Crashed ? 3 : 0;
}
