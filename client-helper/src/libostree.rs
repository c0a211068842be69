//! The libostree calls P2P pulls need that its Rust bindings (the `ostree` crate) do not wrap:
//! `ostree_repo_find_remotes_async`, `ostree_repo_pull_from_remotes_async`, and reading and
//! narrowing an `OstreeRepoFinderResult`. This is the one module of the client helper with
//! `unsafe` code; everything it hands out is safe to use.
//!
//! The async calls are driven to completion on a private GLib main context, made the thread's
//! default while they run, so that they never depend on (or disturb) any other loop.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::ptr;

use ostree::glib::translate::{FromGlibPtrFull, FromGlibPtrNone, ToGlibPtr};
use ostree::{ffi, gio, glib};

/// Where finders look for a collection's refs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finder {
    /// The local repository's remotes that have a `collection-id`.
    Config,
    /// Mounted volumes (`.ostree/repos.d`, `.ostree/repo`, ... on USB sticks and discs).
    Mount,
    /// Fixed repository URLs (`http://`, `https://`, `file://`).
    Override(Vec<String>),
}

impl Finder {
    fn create(&self) -> ostree::RepoFinder {
        use ostree::prelude::Cast;
        match self {
            Finder::Config => ostree::RepoFinderConfig::new().upcast(),
            Finder::Mount => ostree::RepoFinderMount::new(None::<&gio::VolumeMonitor>).upcast(),
            Finder::Override(urls) => {
                let finder = ostree::RepoFinderOverride::new();
                for url in urls {
                    finder.add_uri(url);
                }
                finder.upcast()
            }
        }
    }
}

/// One place the finders found refs at, as libostree returned it.
#[derive(Debug)]
pub(crate) struct FinderResult {
    result: ostree::RepoFinderResult,
    /// The place's URL.
    pub url: String,
    /// The refs of the collection it has, with their commits.
    pub refs: BTreeMap<String, String>,
}

/// The places that have refs of `collection_id` among `refs`, best first, as `finders` find
/// them (`ostree_repo_find_remotes_async`). Summaries are fetched without any header.
pub(crate) fn find_remotes(
    repo: &ostree::Repo,
    collection_id: &str,
    refs: &[String],
    finders: &[Finder],
) -> Result<Vec<FinderResult>, glib::Error> {
    let wanted: Vec<ostree::CollectionRef> = refs
        .iter()
        .map(|r| ostree::CollectionRef::new(Some(collection_id), r))
        .collect();
    let wanted_ptrs: Vec<*const ffi::OstreeCollectionRef> = wanted
        .iter()
        .map(|r| ToGlibPtr::<*const ffi::OstreeCollectionRef>::to_glib_none(r).0)
        .chain([ptr::null()])
        .collect();
    let finders: Vec<ostree::RepoFinder> = finders.iter().map(Finder::create).collect();
    let mut finder_ptrs: Vec<*mut ffi::OstreeRepoFinder> = finders
        .iter()
        .map(|f| ToGlibPtr::<*mut ffi::OstreeRepoFinder>::to_glib_none(f).0)
        .chain([ptr::null_mut()])
        .collect();
    let repo_ptr: *mut ffi::OstreeRepo = repo.to_glib_none().0;
    let results = run_async(
        |callback, data| {
            // SAFETY: `repo_ptr` is a live repository; `wanted_ptrs` and `finder_ptrs` are
            // NULL-terminated arrays of live collection refs and finders, all of which outlive
            // the call (libostree copies or refs what it keeps); no options, progress or
            // cancellable.
            unsafe {
                ffi::ostree_repo_find_remotes_async(
                    repo_ptr,
                    wanted_ptrs.as_ptr(),
                    ptr::null_mut(),
                    finder_ptrs.as_mut_ptr(),
                    ptr::null_mut(),
                    ptr::null_mut(),
                    callback,
                    data,
                )
            }
        },
        |result| {
            let mut error = ptr::null_mut();
            // SAFETY: `result` is the async result this call's callback received.
            let array =
                unsafe { ffi::ostree_repo_find_remotes_finish(repo_ptr, result, &mut error) };
            if array.is_null() {
                // SAFETY: on failure libostree sets `error`, which is ours to free.
                return Err(unsafe { glib::Error::from_glib_full(error) });
            }
            let mut out = Vec::new();
            // SAFETY: `array` is a NULL-terminated array of results we own (transfer full):
            // each element is taken over by a wrapper, then the array itself freed.
            unsafe {
                let mut i = 0;
                while !(*array.add(i)).is_null() {
                    out.push(ostree::RepoFinderResult::from_glib_full(*array.add(i)));
                    i += 1;
                }
                glib::ffi::g_free(array.cast());
            }
            Ok(out)
        },
    )?;
    Ok(results
        .into_iter()
        .map(|result| FinderResult {
            url: url_of(&result),
            refs: refs_of(&result, collection_id),
            result,
        })
        .collect())
}

/// Pulls from `results` (best first), as narrowed with [`narrowed`], with
/// `options` (`a{sv}`; its `http-headers` go to every place in `results`), checking every commit's
/// signature against the collection's keyring (`ostree_repo_pull_from_remotes_async`).
pub(crate) fn pull_from_remotes(
    repo: &ostree::Repo,
    results: &[ostree::RepoFinderResult],
    options: &glib::Variant,
) -> Result<(), glib::Error> {
    let result_ptrs: Vec<*const ffi::OstreeRepoFinderResult> = results
        .iter()
        .map(|r| ToGlibPtr::<*const ffi::OstreeRepoFinderResult>::to_glib_none(r).0)
        .chain([ptr::null()])
        .collect();
    let options_ptr: *mut glib::ffi::GVariant = options.to_glib_none().0;
    let repo_ptr: *mut ffi::OstreeRepo = repo.to_glib_none().0;
    run_async(
        |callback, data| {
            // SAFETY: `repo_ptr` is a live repository, `result_ptrs` a NULL-terminated array of
            // live results and `options_ptr` a live `a{sv}` variant, all outliving the call.
            unsafe {
                ffi::ostree_repo_pull_from_remotes_async(
                    repo_ptr,
                    result_ptrs.as_ptr(),
                    options_ptr,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    callback,
                    data,
                )
            }
        },
        |result| {
            let mut error = ptr::null_mut();
            // SAFETY: `result` is the async result this call's callback received; on failure
            // libostree sets `error`, which is ours to free.
            unsafe {
                if ffi::ostree_repo_pull_from_remotes_finish(repo_ptr, result, &mut error)
                    == glib::ffi::GFALSE
                {
                    return Err(glib::Error::from_glib_full(error));
                }
            }
            Ok(())
        },
    )
}

/// One result for the place `from` are all results for (the first one's remote, finder and
/// priority) with only `keep` among their refs, for a pull of just those from there. libostree
/// may give a place several results (the override finder gives one per ref).
///
/// # Panics
/// If `from` is empty.
pub(crate) fn narrowed(from: &[&FinderResult], keep: &[String]) -> ostree::RepoFinderResult {
    let first: *const ffi::OstreeRepoFinderResult = from[0].result.to_glib_none().0;
    // SAFETY: every pointer is to a live result. The new table owns copies of the kept keys
    // and values (freed by the destroy functions given); `ostree_repo_finder_result_new`
    // takes its own references to the remote, finder and tables (transfer none), so ours to
    // the table is dropped after, and the new result is ours (transfer full).
    unsafe {
        let table = glib::ffi::g_hash_table_new_full(
            Some(ffi::ostree_collection_ref_hash),
            Some(ffi::ostree_collection_ref_equal),
            Some(free_collection_ref),
            Some(glib::ffi::g_free),
        );
        for result in from {
            let raw: *const ffi::OstreeRepoFinderResult = result.result.to_glib_none().0;
            for (key, value) in table_entries((*raw).ref_to_checksum) {
                let name = CStr::from_ptr((*key.cast::<ffi::OstreeCollectionRef>()).ref_name);
                let wanted = keep.iter().any(|k| k.as_bytes() == name.to_bytes());
                if !value.is_null()
                    && wanted
                    && glib::ffi::g_hash_table_contains(table, key) == glib::ffi::GFALSE
                {
                    glib::ffi::g_hash_table_insert(
                        table,
                        ffi::ostree_collection_ref_dup(key.cast()).cast(),
                        glib::ffi::g_strdup(value.cast()).cast(),
                    );
                }
            }
        }
        let narrowed = ffi::ostree_repo_finder_result_new(
            (*first).remote,
            (*first).finder,
            (*first).priority,
            table,
            (*first).ref_to_timestamp,
            (*first).summary_last_modified,
        );
        glib::ffi::g_hash_table_unref(table);
        ostree::RepoFinderResult::from_glib_full(narrowed)
    }
}

/// The URL of the place a result is for.
fn url_of(result: &ostree::RepoFinderResult) -> String {
    let raw: *const ffi::OstreeRepoFinderResult = result.to_glib_none().0;
    // SAFETY: a live result's remote is a live remote; the wrapper takes its own reference.
    let remote: ostree::Remote = unsafe { ostree::Remote::from_glib_none((*raw).remote) };
    remote
        .url()
        .map_or_else(|| remote.name().to_string(), |u| u.to_string())
}

/// The refs of `collection_id` a result has a commit for, with the commit.
fn refs_of(result: &ostree::RepoFinderResult, collection_id: &str) -> BTreeMap<String, String> {
    let raw: *const ffi::OstreeRepoFinderResult = result.to_glib_none().0;
    let mut refs = BTreeMap::new();
    // SAFETY: a live result's `ref_to_checksum` maps live `OstreeCollectionRef`s to checksum
    // strings or NULL (not available there); both are only read here.
    unsafe {
        for (key, value) in table_entries((*raw).ref_to_checksum) {
            let key = &*key.cast::<ffi::OstreeCollectionRef>();
            if value.is_null() || key.collection_id.is_null() {
                continue;
            }
            if CStr::from_ptr(key.collection_id).to_bytes() != collection_id.as_bytes() {
                continue;
            }
            refs.insert(
                CStr::from_ptr(key.ref_name).to_string_lossy().into_owned(),
                CStr::from_ptr(value.cast()).to_string_lossy().into_owned(),
            );
        }
    }
    refs
}

/// The entries of a `GHashTable`, borrowed.
///
/// # Safety
/// `table` must be a live hash table, not changed while the entries are used.
unsafe fn table_entries(
    table: *mut glib::ffi::GHashTable,
) -> Vec<(glib::ffi::gpointer, glib::ffi::gpointer)> {
    let mut entries = Vec::new();
    if table.is_null() {
        return entries;
    }
    // SAFETY: the iterator is initialised on a live table before use, as GLib requires.
    unsafe {
        let mut iter = std::mem::MaybeUninit::<glib::ffi::GHashTableIter>::uninit();
        glib::ffi::g_hash_table_iter_init(iter.as_mut_ptr(), table);
        let (mut key, mut value) = (ptr::null_mut(), ptr::null_mut());
        while glib::ffi::g_hash_table_iter_next(iter.as_mut_ptr(), &mut key, &mut value)
            != glib::ffi::GFALSE
        {
            entries.push((key, value));
        }
    }
    entries
}

/// `ostree_collection_ref_free` as a `GDestroyNotify`.
unsafe extern "C" fn free_collection_ref(key: glib::ffi::gpointer) {
    // SAFETY: the table only holds keys made by `ostree_collection_ref_dup`.
    unsafe { ffi::ostree_collection_ref_free(key.cast()) }
}

/// Where an async call's result lands.
type Slot = Option<gio::AsyncResult>;

/// The `GAsyncReadyCallback` of [`run_async`]: keeps the result in the slot `data` points to.
unsafe extern "C" fn ready(
    _source: *mut glib::gobject_ffi::GObject,
    result: *mut gio::ffi::GAsyncResult,
    data: glib::ffi::gpointer,
) {
    // SAFETY: `data` is the slot `run_async` passed, alive until the result arrives; `result`
    // is live during the callback, and the wrapper takes its own reference.
    unsafe { *data.cast::<Slot>() = Some(gio::AsyncResult::from_glib_none(result)) }
}

/// Starts an async libostree call with `start(callback, user_data)` on a private main context,
/// iterates it until the call completes, and gives the result to `finish`.
fn run_async<T>(
    start: impl FnOnce(gio::ffi::GAsyncReadyCallback, glib::ffi::gpointer),
    finish: impl FnOnce(*mut gio::ffi::GAsyncResult) -> Result<T, glib::Error>,
) -> Result<T, glib::Error> {
    let context = glib::MainContext::new();
    let slot: *mut Slot = Box::into_raw(Box::new(None));
    let pushed = context.with_thread_default(|| {
        start(Some(ready), slot.cast());
        // SAFETY: `slot` stays allocated until freed below, after the callback has run; it is
        // written only by the callback, on this thread, inside `iteration`.
        while unsafe { (*slot).is_none() } {
            context.iteration(true);
        }
    });
    // SAFETY: the callback has run (or `start` never did, if the context could not be made
    // the default), so nothing else refers to the slot now.
    let slot = unsafe { Box::from_raw(slot) };
    pushed.map_err(|e| glib::Error::new(glib::FileError::Failed, &e.to_string()))?;
    let result = slot.expect("the loop ends only with a result");
    finish(result.to_glib_none().0)
}
