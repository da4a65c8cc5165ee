/* The nDPI API that callflow-ndpi uses: bindgen reads this header. */
#include <ndpi_api.h>
