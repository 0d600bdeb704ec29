/*
 * sandbox.c - resource limits and a seccomp allow-list for the processes that
 * handle untrusted input with no need for more: the pre-login process (the
 * client's octets before login) and the password hashing processes (crypt()
 * on the password the client sent).
 *
 * The filter is a plain classic-BPF program (no libseccomp): the CPU
 * architecture must be the one pop3d was built for, and the system call must
 * be on the role's list; anything else fails with EPERM and does nothing. On
 * CPUs this file has no architecture number for, only the limits apply.
 * PR_SET_NO_NEW_PRIVS, which seccomp needs without root, is set here too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "config.h"
#include "sandbox.h"

/* The kernel's seccomp and BPF interface (linux/seccomp.h, linux/filter.h,
 * linux/audit.h), spelled out so that C libraries without the kernel's
 * headers (musl as Debian packages it) build this file too. */
#define SB_SECCOMP_MODE_FILTER  2
#define SB_RET_ALLOW            0x7fff0000U
#define SB_RET_ERRNO            0x00050000U
#define SB_RET_KILL             0x00000000U     /* the thread, for a wrong CPU mode */
#define SB_LD_W_ABS             0x20            /* BPF_LD | BPF_W | BPF_ABS */
#define SB_JEQ_K                0x15            /* BPF_JMP | BPF_JEQ | BPF_K */
#define SB_JGE_K                0x35            /* BPF_JMP | BPF_JGE | BPF_K */
#define SB_RET_K                0x06            /* BPF_RET | BPF_K */
#define SB_OFF_NR               0               /* struct seccomp_data: nr */
#define SB_OFF_ARCH             4               /* ... arch */

#if defined(__x86_64__) && !defined(__ILP32__)
#define SB_ARCH 0xc000003eU                     /* AUDIT_ARCH_X86_64 */
#define SB_NR_LIMIT 0x40000000U                 /* x32 calls: __X32_SYSCALL_BIT */
#elif defined(__i386__)
#define SB_ARCH 0x40000003U                     /* AUDIT_ARCH_I386 */
#elif defined(__aarch64__)
#define SB_ARCH 0xc00000b7U                     /* AUDIT_ARCH_AARCH64 */
#elif defined(__arm__) && defined(__ARMEL__)
#define SB_ARCH 0x40000028U                     /* AUDIT_ARCH_ARM */
#endif

struct sb_insn {                                /* struct sock_filter */
	uint16_t code;
	uint8_t jt, jf;
	uint32_t k;
};

struct sb_prog {                                /* struct sock_fprog */
	unsigned short len;
	struct sb_insn *filter;
};

/* Calls both roles make: memory, time, leaving. */
static const long common_calls[] = {
#ifdef SYS_brk
	SYS_brk,
#endif
#ifdef SYS_mmap
	SYS_mmap,
#endif
#ifdef SYS_mmap2
	SYS_mmap2,
#endif
#ifdef SYS_munmap
	SYS_munmap,
#endif
#ifdef SYS_mremap
	SYS_mremap,
#endif
#ifdef SYS_madvise
	SYS_madvise,
#endif
#ifdef SYS_exit
	SYS_exit,
#endif
#ifdef SYS_exit_group
	SYS_exit_group,
#endif
#ifdef SYS_rt_sigreturn
	SYS_rt_sigreturn,
#endif
#ifdef SYS_sigreturn
	SYS_sigreturn,
#endif
#ifdef SYS_restart_syscall
	SYS_restart_syscall,
#endif
#ifdef SYS_clock_gettime
	SYS_clock_gettime,
#endif
#ifdef SYS_clock_gettime64
	SYS_clock_gettime64,
#endif
#ifdef SYS_gettimeofday
	SYS_gettimeofday,
#endif
#ifdef SYS_sigaltstack
	SYS_sigaltstack,
#endif
#ifdef SYS_gettid
	SYS_gettid,
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
	/* what the sanitizers' runtimes need (only in those builds) */
#ifdef SYS_sched_yield
	SYS_sched_yield,
#endif
#ifdef SYS_prlimit64
	SYS_prlimit64,
#endif
#ifdef SYS_getrlimit
	SYS_getrlimit,
#endif
#ifdef SYS_rt_sigaction
	SYS_rt_sigaction,
#endif
#ifdef SYS_rt_sigprocmask
	SYS_rt_sigprocmask,
#endif
#endif
	-1
};

/* The pre-login process: the client and its channel, the alarm, sleeping. */
static const long prelogin_calls[] = {
#ifdef SYS_read
	SYS_read,
#endif
#ifdef SYS_write
	SYS_write,
#endif
#ifdef SYS_readv
	SYS_readv,
#endif
#ifdef SYS_writev
	SYS_writev,
#endif
#ifdef SYS_recvfrom
	SYS_recvfrom,
#endif
#ifdef SYS_sendto
	SYS_sendto,
#endif
#ifdef SYS_recv
	SYS_recv,
#endif
#ifdef SYS_send
	SYS_send,
#endif
#ifdef SYS_recvmsg
	SYS_recvmsg,
#endif
#ifdef SYS_sendmsg
	SYS_sendmsg,
#endif
#ifdef SYS_shutdown
	SYS_shutdown,
#endif
#ifdef SYS_poll
	SYS_poll,
#endif
#ifdef SYS_ppoll
	SYS_ppoll,
#endif
#ifdef SYS_ppoll_time64
	SYS_ppoll_time64,
#endif
#ifdef SYS_close
	SYS_close,
#endif
#ifdef SYS_fstat
	SYS_fstat,
#endif
#ifdef SYS_fstat64
	SYS_fstat64,
#endif
#ifdef SYS_newfstatat
	SYS_newfstatat,
#endif
#ifdef SYS_statx
	SYS_statx,
#endif
#ifdef SYS_alarm
	SYS_alarm,
#endif
#ifdef SYS_setitimer
	SYS_setitimer,
#endif
#ifdef SYS_rt_sigprocmask
	SYS_rt_sigprocmask,
#endif
#ifdef SYS_nanosleep
	SYS_nanosleep,
#endif
#ifdef SYS_clock_nanosleep
	SYS_clock_nanosleep,
#endif
#ifdef SYS_clock_nanosleep_time64
	SYS_clock_nanosleep_time64,
#endif
#ifdef SYS_getpid
	SYS_getpid,
#endif
#ifdef SYS_getrandom
	SYS_getrandom,
#endif
#ifdef SYS_futex
	SYS_futex,
#endif
#ifdef SYS_fcntl
	SYS_fcntl,              /* O_NONBLOCK for the TLS handshake */
#endif
#ifdef SYS_fcntl64
	SYS_fcntl64,
#endif
	/* 32-bit ARM (armhf): glibc's fstat may be fstatat64, and with 64-bit
	 * time its futex waits are futex_time64 */
#ifdef SYS_fstatat64
	SYS_fstatat64,
#endif
#ifdef SYS_futex_time64
	SYS_futex_time64,
#endif
	-1
};

static const long hash_calls[] = {
	-1                      /* crypt() needs only the common calls */
};

/* The signer: requests and answers on its channel; OpenSSL's blinding and
 * ECDSA nonces need randomness. */
static const long signer_calls[] = {
#ifdef SYS_recvfrom
	SYS_recvfrom,
#endif
#ifdef SYS_sendto
	SYS_sendto,
#endif
#ifdef SYS_recv
	SYS_recv,
#endif
#ifdef SYS_send
	SYS_send,
#endif
#ifdef SYS_getrandom
	SYS_getrandom,
#endif
#ifdef SYS_futex
	SYS_futex,
#endif
#ifdef SYS_futex_time64
	SYS_futex_time64,
#endif
#ifdef SYS_getpid
	SYS_getpid,
#endif
	-1
};

static int
set_limit(int resource, rlim_t value)
{
	struct rlimit rl = { value, value };

	return setrlimit(resource, &rl);
}

/* An ASan build reserves terabytes of address space: no RLIMIT_AS there. */
static int
sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
	return 1;
#else
	return 0;
#endif
#else
	return 0;
#endif
}

static int
limits(int role, int fd_limit)
{
	if (set_limit(RLIMIT_CORE, 0) < 0 || set_limit(RLIMIT_NPROC, 0) < 0 ||
	    set_limit(RLIMIT_NOFILE, (rlim_t)fd_limit) < 0)
		return -1;
	/* (Not for the pre-login process: its client may be a regular file.) */
	if (role != SANDBOX_PRELOGIN && set_limit(RLIMIT_FSIZE, 0) < 0)
		return -1;
	if (role == SANDBOX_PRELOGIN && !sanitized() &&
	    set_limit(RLIMIT_AS, (rlim_t)PRELOGIN_MAX_MEMORY) < 0)
		return -1;
	return 0;
}

#if defined(SB_ARCH) && !defined(SANDBOX_NO_SECCOMP)   /* (valgrind cannot run under it) */
static size_t
add_calls(struct sb_insn *f, size_t n, const long *calls)
{
	for (; *calls >= 0; calls++) {
		f[n++] = (struct sb_insn){ SB_JEQ_K, 0, 1, (uint32_t)*calls };
		f[n++] = (struct sb_insn){ SB_RET_K, 0, 0, SB_RET_ALLOW };
	}
	return n;
}

static int
filter(int role)
{
	struct sb_insn f[2 * (sizeof(common_calls) + sizeof(prelogin_calls)) / sizeof(long) + 8];
	struct sb_prog prog;
	size_t n = 0;

	f[n++] = (struct sb_insn){ SB_LD_W_ABS, 0, 0, SB_OFF_ARCH };
	f[n++] = (struct sb_insn){ SB_JEQ_K, 1, 0, SB_ARCH };
	f[n++] = (struct sb_insn){ SB_RET_K, 0, 0, SB_RET_KILL };
	f[n++] = (struct sb_insn){ SB_LD_W_ABS, 0, 0, SB_OFF_NR };
#ifdef SB_NR_LIMIT
	f[n++] = (struct sb_insn){ SB_JGE_K, 0, 1, SB_NR_LIMIT };
	f[n++] = (struct sb_insn){ SB_RET_K, 0, 0, SB_RET_ERRNO | EPERM };
#endif
	n = add_calls(f, n, common_calls);
	n = add_calls(f, n, role == SANDBOX_PRELOGIN ? prelogin_calls :
	    role == SANDBOX_SIGNER ? signer_calls : hash_calls);
	f[n++] = (struct sb_insn){ SB_RET_K, 0, 0, SB_RET_ERRNO | EPERM };
	prog.len = (unsigned short)n;
	prog.filter = f;
	return prctl(PR_SET_SECCOMP, SB_SECCOMP_MODE_FILTER, &prog, 0, 0);
}
#endif

int
sandbox_enter(int role, int fd_limit, char *err, size_t errlen)
{
#ifdef __linux__
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		snprintf(err, errlen, "prctl: %s", strerror(errno));
		return -1;
	}
#endif
	/* Lowering limits and adding a filter fail only where the kernel
	 * lacks seccomp or an emulator (valgrind) stands in between: there
	 * the process goes on with what it has, and says so. */
	if (limits(role, fd_limit) < 0)
		syslog(LOG_WARNING, "warning sandbox: setrlimit: %m");
#if defined(__linux__) && defined(SB_ARCH) && !defined(SANDBOX_NO_SECCOMP)
	if (filter(role) < 0)
		syslog(LOG_WARNING, "warning sandbox: seccomp: %m");
#endif
	return 0;
}
