//! The nDPI calls: the detection module and per-flow state. Every `unsafe` block of callflowd's nDPI support is in this file.

use crate::{Detection, Error, NdpiConfidence};
use callflow_ndpi_sys as sys;
use std::alloc::{self, Layout};
use std::ffi::CStr;
use std::ptr::NonNull;

/// An initialised nDPI detection module with every protocol enabled.
pub(crate) struct Module {
    raw: NonNull<sys::ndpi_detection_module_struct>,
    /// Protocol names by id, copied once: nDPI's own strings live as long as the module,
    /// and owned copies let `name` hand out `&str` without tying lifetimes to FFI.
    names: Vec<String>,
    flow_layout: Layout,
}

// SAFETY: the module is plain heap memory owned by this value; nDPI keeps no reference
// to the creating thread, and every use goes through `&mut self` (or `&self` for the
// name table, which is Rust-owned), so moving it to another thread is sound.
unsafe impl Send for Module {}

impl Module {
    pub(crate) fn new() -> Result<Module, Error> {
        // One module is made at a time: the first `ndpi_init_detection_module` of a process
        // also initialises libgcrypt (when nDPI is built with it), and libgcrypt aborts the
        // process when two threads initialise it at once (two jobs starting together did).
        // Making a module takes some tens of milliseconds, so waiting costs little.
        static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: a plain constructor call; a null return (allocation failure) is checked.
        let raw = unsafe { sys::ndpi_init_detection_module(sys::ndpi_prefs_ndpi_no_prefs) };
        let raw = NonNull::new(raw).ok_or(Error::InitFailed)?;
        // SAFETY: the bitmask is a plain array of u32 that `zeroed` makes valid; setting
        // every bit is NDPI_BITMASK_SET_ALL. `raw` is a live module, and nDPI copies the
        // bitmask, so the local may go out of scope afterwards.
        unsafe {
            let mut all: sys::ndpi_protocol_bitmask_struct_t = std::mem::zeroed();
            all.fds_bits.iter_mut().for_each(|w| *w = u32::MAX);
            sys::ndpi_set_protocol_detection_bitmask2(raw.as_ptr(), &all);
            sys::ndpi_finalize_initialization(raw.as_ptr());
        }
        // SAFETY: `raw` is a live, finalised module.
        let count = unsafe { sys::ndpi_get_num_supported_protocols(raw.as_ptr()) };
        let names = (0..count)
            .map(|id| {
                // SAFETY: ids below the supported count index nDPI's protocol table; the
                // returned pointer is null or a NUL-terminated string owned by the module,
                // which is alive for the copy.
                let ptr = unsafe { sys::ndpi_get_proto_name(raw.as_ptr(), id as u16) };
                if ptr.is_null() {
                    String::new()
                } else {
                    // SAFETY: non-null and NUL-terminated, as above.
                    unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
                }
            })
            .collect();
        // SAFETY: a pure function of the library build.
        let size = unsafe { sys::ndpi_detection_get_sizeof_ndpi_flow_struct() } as usize;
        // nDPI's own allocator is malloc, whose alignment is 16 on the platforms we build for.
        let flow_layout = Layout::from_size_align(size.max(1), 16).map_err(|_| Error::InitFailed)?;
        Ok(Module { raw, names, flow_layout })
    }

    pub(crate) fn name(&self, id: u16) -> &str {
        self.names.get(id as usize).map_or("Unknown", String::as_str)
    }

    /// A fresh flow state, zeroed as nDPI requires.
    pub(crate) fn new_flow(&self) -> Flow {
        // SAFETY: the layout has a non-zero size (see `new`).
        let ptr = unsafe { alloc::alloc_zeroed(self.flow_layout) };
        let Some(ptr) = NonNull::new(ptr.cast::<sys::ndpi_flow_struct>()) else {
            alloc::handle_alloc_error(self.flow_layout)
        };
        Flow { ptr, layout: self.flow_layout }
    }

    /// Feeds one IP packet of `flow` to nDPI.
    pub(crate) fn process(&mut self, flow: &mut Flow, packet: &[u8], time_ms: u64) -> Detection {
        let len = packet.len().min(u16::MAX as usize) as u16;
        // SAFETY: the module and the flow are live and exclusively borrowed; the flow was
        // created by `new_flow` of a module of the same library, and is only ever passed
        // to one module at a time; nDPI reads at most `len` bytes of `packet`, which
        // `len` never exceeds, and keeps no pointer into it after returning.
        let proto = unsafe {
            sys::ndpi_detection_process_packet(self.raw.as_ptr(), flow.ptr.as_ptr(), packet.as_ptr(), len, time_ms)
        };
        self.detection(flow, proto, false)
    }

    /// Whether nDPI wants more packets of a detected flow (a certificate, a sub-protocol).
    pub(crate) fn wants_more(&mut self, flow: &mut Flow) -> bool {
        // SAFETY: live module and flow, exclusively borrowed, as in `process`.
        unsafe { sys::ndpi_extra_dissection_possible(self.raw.as_ptr(), flow.ptr.as_ptr()) != 0 }
    }

    /// Ends detection for `flow`, letting nDPI guess from ports and addresses.
    pub(crate) fn give_up(&mut self, flow: &mut Flow) -> Detection {
        let mut guessed = 0u8;
        // SAFETY: live module and flow, exclusively borrowed; `guessed` outlives the call.
        let proto = unsafe { sys::ndpi_detection_giveup(self.raw.as_ptr(), flow.ptr.as_ptr(), 1, &mut guessed) };
        self.detection(flow, proto, guessed != 0)
    }

    fn detection(&self, flow: &Flow, proto: sys::ndpi_protocol, guessed: bool) -> Detection {
        // SAFETY: the flow is live and initialised (zeroed, then written by nDPI); reading
        // one enum field copies it out.
        let raw = unsafe { (*flow.ptr.as_ptr()).confidence };
        let confidence = match raw {
            sys::ndpi_confidence_t_NDPI_CONFIDENCE_MATCH_BY_PORT => NdpiConfidence::Port,
            sys::ndpi_confidence_t_NDPI_CONFIDENCE_MATCH_BY_IP => NdpiConfidence::Ip,
            sys::ndpi_confidence_t_NDPI_CONFIDENCE_DPI_CACHE => NdpiConfidence::DpiCache,
            sys::ndpi_confidence_t_NDPI_CONFIDENCE_DPI => NdpiConfidence::Dpi,
            _ => NdpiConfidence::Unknown,
        };
        Detection { master: proto.master_protocol, app: proto.app_protocol, confidence, guessed }
    }
}

/// Whether the linked nDPI was built with libgcrypt (which it needs to decrypt QUIC's
/// Initial packets).
pub(crate) fn has_gcrypt() -> bool {
    // SAFETY: no arguments; it returns libgcrypt's static version string or null.
    !unsafe { sys::ndpi_get_gcrypt_version() }.is_null()
}

/// Detection modules given back by the classifiers that used them, emptied of what they
/// learnt (`callflow_ndpi_forget`), for the next classifier to take instead of making a new
/// one: making one costs some tens of milliseconds, which a server or a batch of small
/// captures would pay per capture.
#[cfg(ndpi_forget)]
static SPARE: std::sync::Mutex<Vec<Module>> = std::sync::Mutex::new(Vec::new());

/// Most modules kept spare (a few MB each): as many as classifiers commonly run at once.
#[cfg(ndpi_forget)]
const MAX_SPARE: usize = 4;

#[cfg(ndpi_forget)]
fn spare() -> std::sync::MutexGuard<'static, Vec<Module>> {
    // A module is pushed or popped whole: a panic elsewhere cannot leave the list half-done.
    SPARE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A module lent to one classifier: a spare one when there is one, else a new one; on drop
/// it is emptied and kept spare (or freed when enough are).
pub(crate) struct Lent(Option<Module>);

impl Lent {
    pub(crate) fn take() -> Result<Lent, Error> {
        #[cfg(ndpi_forget)]
        if let Some(module) = spare().pop() {
            return Ok(Lent(Some(module)));
        }
        Module::new().map(|m| Lent(Some(m)))
    }
}

impl std::ops::Deref for Lent {
    type Target = Module;
    fn deref(&self) -> &Module {
        self.0.as_ref().expect("lent until dropped")
    }
}

impl std::ops::DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut Module {
        self.0.as_mut().expect("lent until dropped")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        #[cfg(ndpi_forget)]
        if let Some(mut module) = self.0.take() {
            module.forget();
            let mut spare = spare();
            if spare.len() < MAX_SPARE {
                spare.push(module);
            }
        }
    }
}

/// How many modules are kept spare.
pub(crate) fn spare_modules() -> usize {
    #[cfg(ndpi_forget)]
    return spare().len();
    #[cfg(not(ndpi_forget))]
    0
}

/// Frees the spare modules.
pub(crate) fn release_spare_modules() {
    // Taken out first: freeing a module takes a while, and others may want the list.
    #[cfg(ndpi_forget)]
    drop(std::mem::take(&mut *spare()));
}

impl Module {
    /// Empties what the module learnt from the flows it saw, so that it classifies the next
    /// capture as a new module would. (The flows themselves are separate allocations, and
    /// a classifier frees its own before its module.)
    #[cfg(ndpi_forget)]
    fn forget(&mut self) {
        // SAFETY: the module is live and exclusively borrowed; the shim frees the caches
        // nDPI allocated and nulls their pointers, which nDPI's dissectors check before
        // use and recreate when needed.
        unsafe { sys::callflow_ndpi_forget(self.raw.as_ptr()) }
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        // SAFETY: the module is live and dropped once; flows are separate allocations
        // that `ndpi_exit_detection_module` does not touch.
        unsafe { sys::ndpi_exit_detection_module(self.raw.as_ptr()) }
    }
}

/// One flow's nDPI state: a zeroed allocation of `ndpi_detection_get_sizeof_ndpi_flow_struct` bytes.
pub(crate) struct Flow {
    ptr: NonNull<sys::ndpi_flow_struct>,
    layout: Layout,
}

// SAFETY: the flow state is heap memory owned by this value, used only through `&mut`.
unsafe impl Send for Flow {}

impl Drop for Flow {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `alloc_zeroed` with this layout and is freed once;
        // `ndpi_free_flow_data` releases what nDPI allocated inside the flow (and works on
        // a flow nDPI never saw, whose pointers are all null) but not the flow itself.
        unsafe {
            sys::ndpi_free_flow_data(self.ptr.as_ptr());
            alloc::dealloc(self.ptr.as_ptr().cast(), self.layout);
        }
    }
}
