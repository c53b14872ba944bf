//! Panic containment for the firewall's proxy: a panic while one request (or one connection) is
//! inspected or proxied ends that request or connection, failed closed, and nothing else. Every
//! other panic of the defender still ends the defender: the panic hook (supervisor/keeper.rs)
//! kills the workload and aborts unless the panicking thread is inside [`catch`] or a
//! [`Contained`] future at that moment (docs/waas.md, "Panics").
//!
//! The release build unwinds (`panic = "unwind"` in Cargo.toml) so that a contained panic can be
//! caught; the hook runs before any unwinding, so an uncontained panic aborts from where it
//! happened, as under `panic = "abort"`.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

std::thread_local! {
    /// How many containment scopes this thread is inside now (they nest: a request's inside its
    /// connection's).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// A panic that was contained: what it said, for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("panicked: {0}")]
pub struct Panicked(pub String);

/// Whether a panic on this thread now would be contained (read by the panic hook).
pub fn active() -> bool {
    DEPTH.with(Cell::get) > 0
}

/// Counts one scope in [`DEPTH`] while it lives, and uncounts it however the scope ends.
struct Scope;

impl Scope {
    fn enter() -> Scope {
        DEPTH.with(|d| d.set(d.get() + 1));
        Scope
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Runs `f`; a panic in it is caught and returned as [`Panicked`] instead of ending the defender.
///
/// What `f` touched may be left half-updated: callers give it only state that is either the
/// request's own or kept whole across a panic (the proxy's locks recover from poisoning, each of
/// their updates being one statement).
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panicked> {
    let _scope = Scope::enter();
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panicked(message(payload.as_ref())))
}

pin_project_lite::pin_project! {
    /// A future whose every poll is run under [`catch`]: `Ok` with its output, or `Err` at its
    /// first panic (it is not polled again after that, and is dropped with the `Contained`).
    pub struct Contained<F> {
        #[pin]
        future: F,
        panicked: bool,
    }
}

impl<F: Future> Contained<F> {
    pub fn new(future: F) -> Contained<F> {
        Contained {
            future,
            panicked: false,
        }
    }
}

impl<F: Future> Future for Contained<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.panicked {
            return Poll::Ready(Err(Panicked("polled after a panic".into())));
        }
        match catch(|| this.future.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(panicked) => {
                *this.panicked = true;
                Poll::Ready(Err(panicked))
            }
        }
    }
}

/// The text a panic was raised with (`panic!("...")` gives a `&str` or a `String`).
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_catch_is_returned_and_the_scope_ends() {
        assert!(!active());
        assert_eq!(catch(|| 7), Ok(7));
        let caught = catch(|| {
            assert!(active());
            let values: Vec<u8> = Vec::new();
            values[3]
        });
        let Err(Panicked(message)) = caught else {
            panic!("not caught: {caught:?}");
        };
        assert!(message.contains("index out of bounds"), "{message}");
        assert!(!active(), "the scope outlived the panic");
        // Nested scopes: the outer one is still active after the inner one caught its panic.
        let nested = catch(|| (catch(|| panic!("inner")), active()));
        assert_eq!(nested, Ok((Err::<(), _>(Panicked("inner".into())), true)));
        assert!(!active());
    }

    /// A future that panics at its second poll: `Contained` gives the error, and the thread is
    /// out of every scope after it.
    #[test]
    fn a_panicking_future_is_contained() {
        let mut polls = 0;
        let future = std::future::poll_fn(move |cx| {
            polls += 1;
            if polls == 2 {
                panic!("poll {polls}");
            }
            cx.waker().wake_by_ref();
            Poll::<u8>::Pending
        });
        let mut contained = std::pin::pin!(Contained::new(future));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(contained.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            contained.as_mut().poll(&mut cx),
            Poll::Ready(Err(Panicked("poll 2".into())))
        );
        assert!(!active());
        assert!(matches!(
            contained.as_mut().poll(&mut cx),
            Poll::Ready(Err(_))
        ));
        let mut done = std::pin::pin!(Contained::new(std::future::ready(5)));
        assert_eq!(done.as_mut().poll(&mut cx), Poll::Ready(Ok(5)));
    }
}
