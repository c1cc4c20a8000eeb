//! A holding thread's current stack, taken by the thread itself on request
//! (Linux, feature `deadlock_detection`, `WatchdogConfig::holder_stacks`).
//!
//! A report asks by sending `SIGURG` to the thread (`tgkill`, this process
//! only); the thread's handler walks its own stack into a buffer reserved
//! in advance and says it is done with one atomic store; the report waits
//! up to 100 ms for that, then looks up the symbols itself. As sampling
//! profilers do, the handler is the only code that runs on the interrupted
//! thread, and it does as little as it can.
//!
//! What the handler does, and how async-signal-safe each step is:
//! - `gettid` (a raw system call) and atomic loads and stores on a static
//!   mailbox: safe. It saves and restores `errno`.
//! - `backtrace::trace_unsynchronized`, which on Linux is libgcc's
//!   `_Unwind_Backtrace`: not async-signal-safe by any standard, but it
//!   allocates nothing and, with glibc 2.35 or later and libgcc 12 or later
//!   (where `_Unwind_Find_FDE` uses the lock-free `_dl_find_object`), takes
//!   no lock, unless the program registers unwind tables at run time
//!   (`__register_frame`, as some JIT compilers do): libgcc before 13 then
//!   takes a mutex, and a thread interrupted while holding it would wait in
//!   its handler forever. With an older glibc or libgcc, the lookup goes
//!   through `dl_iterate_phdr`, which takes the loader's lock: a thread
//!   interrupted inside `dlopen` would do the same. The report does not
//!   hang (it gives up after 100 ms and no later request is sent until that
//!   walk ends), but the holder would. libgcc's one-time set-up of its
//!   register table (under `pthread_once`) is done by the requesting thread
//!   before the handler is installed, so a handler never runs it.
//! - The synchronised `backtrace::trace` (a global lock, which the
//!   interrupted thread may hold) and symbol lookup (allocation, file
//!   reads) never run in the handler: the report resolves the addresses on
//!   its own thread.
//!
//! Which signal, and how it is installed: `SIGURG`, whose default action
//! is to ignore it, so a request that arrives late, or after the program
//! reset the handler, cannot kill the process (a real-time signal's
//! default action would); programs rarely use it (out-of-band socket data,
//! Go's preemption). The handler is installed at the first request, only if
//! the signal's action is still the default: a program's handler, or
//! `SIG_IGN`, is never replaced, and then no stack is asked for
//! ([`NoStack::SignalInUse`]). Flags `SA_SIGINFO | SA_RESTART`, so that
//! restartable system calls the holder is in go on by themselves; calls
//! that are never restarted (`nanosleep`, `epoll_wait`, `poll`, reads with
//! a timeout) return `EINTR` to the holder, as with any profiler's signal
//! (std's `thread::sleep` goes back to sleep; a raw `read` returns
//! `ErrorKind::Interrupted`). Not `SA_ONSTACK`: the handler runs on the
//! holder's own stack, not on the alternate stack that std gives each
//! thread for its stack-overflow message, which is a few KiB, where an
//! unwinder's frames might not fit.
//!
//! Which thread: the record keeps the kernel's id of its thread, set when
//! the thread claims the record. A request is sent only while the record
//! is claimed by a live thread, and the answer is kept only if it still is,
//! by the same thread, afterwards. A thread marks its record free in a
//! thread-local destructor, before it exits; the signal goes through
//! `tgkill` to this process only, so a thread that exited in between gets
//! nothing (`ESRCH`), and a kernel id reused meanwhile (after the kernel
//! went through every other id) reaches another thread of this process,
//! whose handler answers and whose answer is dropped by the second check.
//! What remains: a thread whose first lock is taken while its thread-locals
//! are being destroyed keeps its record claimed after it exits; a request
//! for it goes to a reused id, if any, and shows that thread's stack.

use core::ffi::{c_int, c_void};
use core::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{NoStack, ThreadInfo};
use crate::record::thread::{self, ThreadRecord};

/// The signal a request is sent with.
const SIGNAL: c_int = libc::SIGURG;
/// Frames a thread writes into the mailbox; a deeper stack is cut.
const FRAMES: usize = 128;
/// How long a report waits for an answer.
const ANSWER_WITHIN: Duration = Duration::from_millis(100);

// The mailbox word: the asked thread's kernel id, shifted, and a state.
const IDLE: usize = 0;
const ASKED: usize = 1;
const WALKING: usize = 2;
const ANSWERED: usize = 3;
const STATE: usize = 3;

/// The one request in flight and its answer. `word` moves IDLE -> ASKED
/// (the requester) -> WALKING (the asked thread's handler, by one
/// compare-exchange) -> ANSWERED (the handler) -> IDLE (the requester);
/// a requester that gives up moves ASKED -> IDLE, so that a handler that
/// runs after that writes nothing. The frames belong to the handler only
/// while the word says WALKING, to the requester otherwise.
struct Mailbox {
    word: AtomicUsize,
    len: AtomicUsize,
    frames: [AtomicUsize; FRAMES],
}

static MAILBOX: Mailbox = Mailbox {
    word: AtomicUsize::new(IDLE),
    len: AtomicUsize::new(0),
    frames: [const { AtomicUsize::new(0) }; FRAMES],
};

/// Serialises requests: there is one mailbox.
static ASKING: Mutex<()> = Mutex::new(());
/// Whether the handler was installed (once per process).
static INSTALLED: OnceLock<Result<(), NoStack>> = OnceLock::new();

fn asked(tid: i32) -> usize {
    // Kernel thread ids are positive and below 2^22 (`pid_max`).
    (tid as u32 as usize) << 2 | ASKED
}

/// The current stack of `thread`, a holder named in a report.
pub(crate) fn of(thread: &ThreadInfo) -> Result<String, NoStack> {
    let record = thread::by_id(thread.id).ok_or(NoStack::Exited)?;
    let same_thread = |record: &ThreadRecord| {
        record.alive()
            && record.name() == thread.name
            && record.holds.iter().any(|h| h.load(Ordering::Relaxed) != 0)
    };
    if !same_thread(record) {
        return Err(NoStack::Exited);
    }
    // blocking-ok: once per process, on a report's thread.
    (*INSTALLED.get_or_init(install))?;
    // blocking-ok: requests one at a time, on a report's thread.
    let _one = ASKING.lock().unwrap_or_else(|e| e.into_inner());
    if !handler_is_ours() {
        return Err(NoStack::SignalInUse);
    }
    let tid = record.tid.load(Ordering::Relaxed);
    if tid <= 0 {
        return Err(NoStack::Exited);
    }
    let frames = ask(record, tid)?;
    // The answer is this thread's only if the record still belongs to it.
    if !same_thread(record) || record.tid.load(Ordering::Relaxed) != tid {
        return Err(NoStack::Exited);
    }
    Ok(resolve(&frames))
}

/// Sends the request to `tid` and waits for the answer (the caller holds
/// `ASKING`).
fn ask(record: &ThreadRecord, tid: i32) -> Result<Vec<usize>, NoStack> {
    if MAILBOX.word.load(Ordering::Acquire) & STATE == WALKING {
        return Err(NoStack::Busy);
    }
    MAILBOX.word.store(asked(tid), Ordering::Release);
    let give_up = |why| {
        // A handler that has not started finds IDLE and writes nothing.
        match MAILBOX
            .word
            .compare_exchange(asked(tid), IDLE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Err(why),
            // It has started: the next request waits for it to end.
            Err(_) => Err(NoStack::NoAnswer),
        }
    };
    if !record.alive() || record.tid.load(Ordering::Relaxed) != tid {
        return give_up(NoStack::Exited);
    }
    // SAFETY: getpid has no preconditions; tgkill with this process's id
    // signals a thread of this process or none (ESRCH). The signal's
    // handler is ours (checked under `ASKING`) and writes only into the
    // mailbox, armed above for exactly this thread id.
    let sent = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, SIGNAL) };
    if sent != 0 {
        return give_up(NoStack::Exited);
    }
    let start = Instant::now();
    let mut polls = 0u32;
    loop {
        let word = MAILBOX.word.load(Ordering::Acquire);
        if word == asked(tid) - ASKED + ANSWERED {
            let len = MAILBOX.len.load(Ordering::Relaxed).min(FRAMES);
            let frames = MAILBOX.frames[..len]
                .iter()
                .map(|f| f.load(Ordering::Relaxed))
                .collect();
            MAILBOX.word.store(IDLE, Ordering::Release);
            return Ok(frames);
        }
        if start.elapsed() >= ANSWER_WITHIN {
            return give_up(NoStack::NoAnswer);
        }
        // An answer usually comes within tens of microseconds: yield first,
        // then sleep, so a thread that never answers costs little.
        polls += 1;
        if polls < 100 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Runs on the asked thread, interrupted wherever it was: only the steps
/// the module docs list as safe here.
extern "C" fn on_signal(_signal: c_int, _info: *mut libc::siginfo_t, _context: *mut c_void) {
    // SAFETY: `__errno_location` returns this thread's errno, valid for the
    // thread's life; the handler restores it, as a handler must.
    let errno = unsafe { *libc::__errno_location() };
    let me = thread::current_tid();
    if MAILBOX
        .word
        .compare_exchange(
            asked(me),
            asked(me) - ASKED + WALKING,
            Ordering::Acquire,
            Ordering::Relaxed,
        )
        .is_ok()
    {
        let mut len = 0;
        // SAFETY: the unsynchronised walk takes no lock that the interrupted
        // thread could hold (the synchronised one does), and the callback
        // only stores into the mailbox, which this handler owns while the
        // word says WALKING; it cannot panic (no indexing out of bounds).
        unsafe {
            backtrace::trace_unsynchronized(|frame| match MAILBOX.frames.get(len) {
                Some(slot) => {
                    slot.store(frame.ip() as usize, Ordering::Relaxed);
                    len += 1;
                    true
                }
                None => false,
            });
        }
        MAILBOX.len.store(len, Ordering::Relaxed);
        MAILBOX
            .word
            .store(asked(me) - ASKED + ANSWERED, Ordering::Release);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

type Handler = extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);

/// The signal's current action.
fn action_now() -> Option<libc::sigaction> {
    // SAFETY: sigaction with a null new action only reads the current one
    // into `old`, a plain struct for which all zeroes is a valid value.
    unsafe {
        let mut old: libc::sigaction = core::mem::zeroed();
        (libc::sigaction(SIGNAL, core::ptr::null(), &mut old) == 0).then_some(old)
    }
}

fn handler_is_ours() -> bool {
    action_now().is_some_and(|a| a.sa_sigaction == on_signal as Handler as libc::sighandler_t)
}

/// Installs the handler if the signal's action is the default one.
fn install() -> Result<(), NoStack> {
    // libgcc sets up its register table on the first walk in the process
    // (under `pthread_once`); a handler interrupting that first walk would
    // wait on it forever, so one walk happens here first.
    backtrace::trace(|_| true);
    let is_default = |a: &libc::sigaction| a.sa_sigaction == libc::SIG_DFL;
    if !action_now().is_some_and(|a| is_default(&a)) {
        return Err(NoStack::SignalInUse);
    }
    // SAFETY: `new` is fully initialised (zeroes, then an empty mask, the
    // handler and its flags); `old` receives the action replaced. If that
    // was not the default one (a program's handler installed since the
    // check above), it is put back at once.
    unsafe {
        let mut new: libc::sigaction = core::mem::zeroed();
        libc::sigemptyset(&mut new.sa_mask);
        new.sa_sigaction = on_signal as Handler as libc::sighandler_t;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        let mut old: libc::sigaction = core::mem::zeroed();
        if libc::sigaction(SIGNAL, &new, &mut old) != 0 {
            return Err(NoStack::SignalInUse);
        }
        if !is_default(&old) {
            libc::sigaction(SIGNAL, &old, core::ptr::null_mut());
            return Err(NoStack::SignalInUse);
        }
    }
    Ok(())
}

/// The frames as text, one per line as `backtrace::Backtrace` shows them,
/// without the request's own frames (the walk, the handler) and the
/// trampoline the kernel returns through.
fn resolve(frames: &[usize]) -> String {
    struct Symbol {
        name: String,
        at: Option<String>,
        handler: bool,
    }
    let handler = on_signal as Handler as usize;
    let symbols: Vec<Vec<Symbol>> = frames
        .iter()
        .map(|&ip| {
            let mut symbols = Vec::new();
            backtrace::resolve(ip as *mut c_void, |symbol| {
                let name = symbol
                    .name()
                    .map_or_else(|| "<unknown>".to_string(), |n| format!("{n:#}"));
                symbols.push(Symbol {
                    handler: symbol.addr().is_some_and(|a| a as usize == handler)
                        || name.ends_with("current_stack::on_signal"),
                    at: match (symbol.filename(), symbol.lineno()) {
                        (Some(file), Some(line)) => Some(format!("{}:{line}", file.display())),
                        _ => None,
                    },
                    name,
                });
            });
            symbols
        })
        .collect();
    // The frame after the handler's is the trampoline the kernel returns
    // through (glibc's `__restore_rt`, the vDSO's `__kernel_rt_sigreturn`),
    // often without a symbol.
    let first = symbols
        .iter()
        .rposition(|s| s.iter().any(|s| s.handler))
        .map_or(0, |i| i + 2);
    let mut out = String::new();
    let frames = frames.iter().zip(&symbols).skip(first);
    // The walk ends on a null return address (the thread's first frame).
    for (i, (ip, symbols)) in frames.filter(|(ip, _)| **ip != 0).enumerate() {
        if symbols.is_empty() {
            let _ = writeln!(out, "{i:4}: {ip:#x}");
        }
        for (j, symbol) in symbols.iter().enumerate() {
            let _ = if j == 0 {
                writeln!(out, "{i:4}: {}", symbol.name)
            } else {
                writeln!(out, "      {}", symbol.name)
            };
            if let Some(at) = &symbol.at {
                let _ = writeln!(out, "             at {at}");
            }
        }
    }
    if symbols.len() == FRAMES {
        let _ = writeln!(out, "      (cut at {FRAMES} frames)");
    }
    out
}
