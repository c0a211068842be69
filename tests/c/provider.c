/* A credential provider written in C from tollgate_provider.h alone: the provider tests build it
 * with `cc` to show that the ABI really is C, and build faulty variants of it with -D flags:
 *
 *   -DNAME='"x"'   its name (default "c")
 *   -DOTHER_ABI    says it is built for the next major ABI version
 *   -DNO_ENTRY     exports its descriptor under a misspelt symbol
 *   -DTOO_SMALL    says its descriptor is smaller than the ABI's
 *   -DBAD_UTF8     returns a secret that is not UTF-8
 *   -DHANG         never answers a lookup
 *   -DFAIL_WITH_CREDENTIAL  sets the credential, then fails the lookup anyway
 *
 * It has the license key in $C_PROVIDER_KEY for the URL in $C_PROVIDER_URL, and nothing else.
 * With $C_PROVIDER_FREES set, free_credential appends a line to that file for each credential
 * given back, saying whether its secret was there to wipe.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tollgate_provider.h"

#ifndef NAME
#define NAME "c"
#endif

static char *copy(const char *text) {
    size_t n = strlen(text) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, text, n);
    return p;
}

static int32_t lookup(const tollgate_request *request, tollgate_credential **credential,
                      char **message) {
#ifdef HANG
    for (;;) sleep(3600);
#endif
    const char *url = getenv("C_PROVIDER_URL");
    const char *key = getenv("C_PROVIDER_KEY");
    if (!url || !key || strcmp(url, request->url) != 0) {
        *message = copy("the C provider has no credential for this URL");
        return TOLLGATE_NOT_FOUND;
    }
    tollgate_credential *c = calloc(1, sizeof *c);
    if (!c) return TOLLGATE_OTHER;
    c->size = sizeof *c;
    c->kind = TOLLGATE_KIND_LICENSE_KEY;
    c->user = NULL;
#ifdef BAD_UTF8
    c->secret = copy("tg_\xff\xfe");
#else
    c->secret = copy(key);
#endif
    *credential = c;
#ifdef FAIL_WITH_CREDENTIAL
    *message = copy("the C provider failed after setting a credential");
    return TOLLGATE_OTHER;
#else
    return TOLLGATE_OK;
#endif
}

static void free_credential(tollgate_credential *c) {
    if (!c) return;
    char *secret = (char *)c->secret;
    const char *frees = getenv("C_PROVIDER_FREES");
    if (frees) {
        FILE *f = fopen(frees, "a");
        if (f) {
            fputs(secret ? "freed a credential, secret wiped\n" : "freed a credential\n", f);
            fclose(f);
        }
    }
    if (secret) {
        memset(secret, 0, strlen(secret));
        free(secret);
    }
    free(c);
}

static void free_message(char *message) { free(message); }

static const tollgate_provider descriptor = {
#ifdef OTHER_ABI
    .abi_major = TOLLGATE_PROVIDER_ABI_MAJOR + 1,
#else
    .abi_major = TOLLGATE_PROVIDER_ABI_MAJOR,
#endif
    .abi_minor = TOLLGATE_PROVIDER_ABI_MINOR,
#ifdef TOO_SMALL
    .size = 16,
#else
    .size = sizeof(tollgate_provider),
#endif
    .name = NAME,
    .version = "1.0-c",
    .description = "a provider written in C",
    .capabilities = TOLLGATE_CAN_LOOKUP,
    .lookup = lookup,
    .store = NULL,
    .erase = NULL,
    .free_credential = free_credential,
    .free_message = free_message,
};

#ifdef NO_ENTRY
const tollgate_provider *tollgate_provider_entry_misspelt(void) { return &descriptor; }
#else
const tollgate_provider *tollgate_provider_entry(void) { return &descriptor; }
#endif
