/* tollgate_provider.h: the C ABI of tollgate credential providers, version 1.0.
 *
 * A provider is a shared library, libtollgate_provider_<name>.so, that exports one function,
 * tollgate_provider_entry, returning a pointer to a static tollgate_provider descriptor. The
 * tollgate helper loads it once (never unloads it), checks abi_major and size, and then calls
 * the descriptor's functions to look up, store and erase the credential for an entitlement
 * service URL.
 *
 * Rules:
 * - Strings are NUL-terminated UTF-8.
 * - Whatever the provider returns (a credential, a message) it allocated, and the host gives it
 *   back through free_credential or free_message; the host never frees it with its own free().
 * - The host makes one call at a time per provider, possibly from different threads, and
 *   abandons a call that takes longer than its time limit (the provider is not called again).
 * - Fields are only ever appended to these structs, and each struct's `size` says how many
 *   bytes of it its maker filled: a host reads no field past a provider's `size`, and a
 *   provider reads no field of a request or credential past the host's `size`. Version 1.0's
 *   sizes are the least either side accepts.
 * - The host always passes valid pointers: `request`, `credential` and `message` are never
 *   NULL, and `*credential` and `*message` are NULL on entry.
 * - A provider must not unwind (throw, longjmp, panic) across these functions.
 *
 * The Rust definitions in tollgate-plugin-api (src/abi.rs) are the same; a test compiles this
 * header and checks every size and offset against them.
 */
#ifndef TOLLGATE_PROVIDER_H
#define TOLLGATE_PROVIDER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TOLLGATE_PROVIDER_ABI_MAJOR 1
#define TOLLGATE_PROVIDER_ABI_MINOR 0
#define TOLLGATE_PROVIDER_ENTRY "tollgate_provider_entry"

/* What a call returns. The error kinds follow Cargo's credential-provider protocol. */
#define TOLLGATE_OK 0
#define TOLLGATE_NOT_FOUND 1                /* no credential for this URL */
#define TOLLGATE_URL_NOT_SUPPORTED 2        /* this provider does not handle this URL */
#define TOLLGATE_OPERATION_NOT_SUPPORTED 3  /* e.g. store on a read-only provider */
#define TOLLGATE_LOCKED 4                   /* the store is locked and may not prompt now */
#define TOLLGATE_OTHER 5                    /* anything else; the message says what */

/* Credential kinds. */
#define TOLLGATE_KIND_LICENSE_KEY 1   /* secret: the license key (tg_...) */
#define TOLLGATE_KIND_PASSWORD 2      /* user: the account name; secret: its password */
#define TOLLGATE_KIND_TOKEN 3         /* secret: a bearer token */

/* Capabilities, or-ed together in tollgate_provider.capabilities. */
#define TOLLGATE_CAN_LOOKUP 1u
#define TOLLGATE_CAN_STORE 2u
#define TOLLGATE_CAN_ERASE 4u

/* Request flags. */
#define TOLLGATE_INTERACTIVE 1u   /* the provider may ask the user (e.g. to unlock a keyring) */

typedef struct tollgate_request {
    uint32_t size;      /* sizeof(tollgate_request) as the host was built */
    uint32_t flags;     /* TOLLGATE_INTERACTIVE, ... */
    const char *url;    /* the entitlement service, normalised: scheme://host[:port]/path */
} tollgate_request;

typedef struct tollgate_credential {
    uint32_t size;      /* sizeof(tollgate_credential) as its maker was built */
    uint32_t kind;      /* TOLLGATE_KIND_... */
    const char *user;   /* the account name for TOLLGATE_KIND_PASSWORD, else NULL */
    const char *secret; /* the key, password or token */
} tollgate_credential;

typedef struct tollgate_provider {
    uint16_t abi_major;       /* TOLLGATE_PROVIDER_ABI_MAJOR: another major is refused */
    uint16_t abi_minor;       /* TOLLGATE_PROVIDER_ABI_MINOR */
    uint32_t size;            /* sizeof(tollgate_provider) as the provider was built */
    const char *name;         /* short and unique: lowercase letters, digits, '-' */
    const char *version;      /* the provider's own version */
    const char *description;  /* one line for people; may be NULL */
    uint32_t capabilities;    /* TOLLGATE_CAN_... */

    /* On TOLLGATE_OK, sets *credential to a credential the provider allocated. On an error, may
     * set *message to a message the provider allocated; a credential it sets anyway is not
     * used, and is given back through free_credential. */
    int32_t (*lookup)(const tollgate_request *request, tollgate_credential **credential,
                      char **message);
    int32_t (*store)(const tollgate_request *request, const tollgate_credential *credential,
                     char **message);
    int32_t (*erase)(const tollgate_request *request, char **message);
    void (*free_credential)(tollgate_credential *credential);
    void (*free_message)(char *message);
} tollgate_provider;

/* The one symbol a provider exports. */
const tollgate_provider *tollgate_provider_entry(void);

#ifdef __cplusplus
}
#endif

#endif
