/* example: put a key, read it back, swap it only if unchanged (a Txn), and
 * show how an etcd error comes back. Build: link fl_client (see docs/client.md).
 * usage: example [ENDPOINT]   (default 127.0.0.1:2379) */
#include <stdio.h>
#include <string.h>

#include "client/client.h"

static ProtobufCBinaryData bytes(const char *s)
{
    return (ProtobufCBinaryData){strlen(s), (uint8_t *)s};
}

int main(int argc, char **argv)
{
    const char *endpoints[] = {argc > 1 ? argv[1] : "127.0.0.1:2379"};
    client_options options = {.endpoints = endpoints, .endpoint_count = 1};
    client_sync *kv = NULL;
    if (client_sync_open(&options, &kv) != FL_OK)
        return 1;
    client_status status;
    const uint64_t timeout_ms = 5000;

    /* Put: the request may live on the stack; the library packs it. */
    Etcdserverpb__PutRequest put;
    etcdserverpb__put_request__init(&put);
    put.key = bytes("greeting");
    put.value = bytes("hello");
    Etcdserverpb__PutResponse *put_resp = NULL;
    if (client_sync_put(kv, &put, timeout_ms, &put_resp, &status) != FL_OK)
        goto fail;
    client_free_response(put_resp); /* every response is ours to free */

    /* Range (a get of one key). */
    Etcdserverpb__RangeRequest get;
    etcdserverpb__range_request__init(&get);
    get.key = bytes("greeting");
    Etcdserverpb__RangeResponse *got = NULL;
    if (client_sync_range(kv, &get, timeout_ms, &got, &status) != FL_OK)
        goto fail;
    const Mvccpb__KeyValue *item = got->kvs[0];
    printf("greeting = %.*s\n", (int)item->value.len, (const char *)item->value.data);
    int64_t seen_mod = item->mod_revision;
    client_free_response(got);

    /* Txn: replace the value only if nobody changed it since we read it. */
    for (int attempt = 0; attempt < 2; attempt++) {
        Etcdserverpb__Compare unchanged;
        etcdserverpb__compare__init(&unchanged);
        unchanged.key = bytes("greeting");
        unchanged.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
        unchanged.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
        unchanged.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
        unchanged.mod_revision = seen_mod;
        Etcdserverpb__PutRequest swap;
        etcdserverpb__put_request__init(&swap);
        swap.key = bytes("greeting");
        swap.value = bytes("bonjour");
        Etcdserverpb__RequestOp then;
        etcdserverpb__request_op__init(&then);
        then.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
        then.request_put = &swap;
        Etcdserverpb__Compare *compares[] = {&unchanged};
        Etcdserverpb__RequestOp *success[] = {&then};
        Etcdserverpb__TxnRequest txn;
        etcdserverpb__txn_request__init(&txn);
        txn.n_compare = 1;
        txn.compare = compares;
        txn.n_success = 1;
        txn.success = success;
        Etcdserverpb__TxnResponse *txn_resp = NULL;
        if (client_sync_txn(kv, &txn, timeout_ms, &txn_resp, &status) != FL_OK)
            goto fail;
        /* The second attempt fails: the first one changed mod_revision. */
        printf("swapped%s: %s\n", attempt ? " again" : "", txn_resp->succeeded ? "yes" : "no");
        client_free_response(txn_resp);
    }

    /* Errors: an fl_err plus etcd's own message text. */
    Etcdserverpb__PutRequest bad;
    etcdserverpb__put_request__init(&bad); /* no key */
    Etcdserverpb__PutResponse *bad_resp = NULL;
    fl_err err = client_sync_put(kv, &bad, timeout_ms, &bad_resp, &status);
    if (err == FL_ERR_KEY_EMPTY)
        printf("Error: %s\n", status.message);

    client_sync_close(kv);
    return 0;
fail:
    fprintf(stderr, "Error: %s\n", status.message);
    client_sync_close(kv);
    return 1;
}
