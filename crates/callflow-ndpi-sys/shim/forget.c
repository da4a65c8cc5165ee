/*
 * What callflow-ndpi needs of nDPI 4.2 that its API does not offer: emptying what a
 * detection module learnt from the flows it saw, so that the module can serve another
 * capture as if it were new.
 *
 * Initialising a module (protocol tables, IP range trees, host automata) costs some tens
 * of milliseconds and freeing it a few more, for every capture analysed; a server or a
 * batch of small captures pays that per job. What a module learns while it classifies
 * lives only in the caches below, which nDPI's dissectors create when they first need
 * them (they check for NULL): freeing them and setting them to NULL, as
 * ndpi_exit_detection_module frees them, gives back a module in the state
 * ndpi_finalize_initialization left it in.
 *
 * Compiled only with the vendored tree, with the same definitions as the library, since
 * it reads the module's layout (NDPI_LIB_COMPILATION): a system libndpi may have been
 * built with options that change that layout, and is then never reused.
 */
#include "ndpi_api.h"
#include "libcache.h"

/* Later versions create their caches at initialisation and have more of them: emptying
 * them as below would then be wrong, so another version must not build this silently. */
#if NDPI_MAJOR != 4 || NDPI_MINOR != 2
#error "callflow_ndpi_forget knows the detection module of nDPI 4.2 only"
#endif

void callflow_ndpi_forget(struct ndpi_detection_module_struct *m) {
  if (m->tinc_cache) {
    cache_free((cache_t)m->tinc_cache);
    m->tinc_cache = NULL;
  }
#define CALLFLOW_FORGET(field)          \
  if (m->field) {                       \
    ndpi_lru_free_cache(m->field);      \
    m->field = NULL;                    \
  }
  CALLFLOW_FORGET(ookla_cache)
  CALLFLOW_FORGET(bittorrent_cache)
  CALLFLOW_FORGET(zoom_cache)
  CALLFLOW_FORGET(stun_cache)
  CALLFLOW_FORGET(tls_cert_cache)
  CALLFLOW_FORGET(mining_cache)
  CALLFLOW_FORGET(msteams_cache)
#undef CALLFLOW_FORGET
}
