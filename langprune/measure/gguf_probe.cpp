// A small llama.cpp client that answers the questions the host asks of a GGUF file through
// llama-cpp-python, so that a build for another CPU (aarch64, run under qemu-user) can be
// compared with the host token for token. Built by langprune/measure/arm64.py against the
// llama.cpp that llama-cpp-python vendors.
//
// Usage: gguf_probe MODEL.gguf THREADS < requests   (stderr: errors and llama.cpp's weight buffer sizes)
// One request a line on stdin, one answer a line on stdout:
//   tokenize <UTF-8 text as hex>  -> its token ids (BOS where the vocabulary adds one, specials as text)
//   score <ids...>                -> summed negative log-likelihood, in nats, of ids[1:]
//   greedy <n> <ids...>           -> the n next tokens, greedy, with the KV cache
// The same steps as langprune/measure/llamacpp.py: `tokenize`, `llama_scorer`, `greedy`.
#include "llama.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

static const int N_CTX = 1024;

static std::vector<llama_token> read_ids(std::istringstream & in) {
    std::vector<llama_token> ids;
    for (llama_token id; in >> id;) ids.push_back(id);
    return ids;
}

static std::string from_hex(const std::string & hex) {
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back((char) std::stoi(hex.substr(i, 2), nullptr, 16));
    return out;
}

static void print_ids(const std::vector<llama_token> & ids) {
    for (size_t i = 0; i < ids.size(); i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
}

// Evaluate ids from position `start`, asking for logits at every position when `all`, else at the last.
static bool decode(llama_context * ctx, const std::vector<llama_token> & ids, int start, bool all) {
    llama_batch batch = llama_batch_init((int) ids.size(), 0, 1);
    for (size_t i = 0; i < ids.size(); i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = start + (int) i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = all || i + 1 == ids.size();
    }
    batch.n_tokens = (int) ids.size();
    bool ok = llama_decode(ctx, batch) == 0;
    llama_batch_free(batch);
    return ok;
}

static llama_token argmax(const float * logits, int n_vocab) {
    int best = 0;
    for (int i = 1; i < n_vocab; i++) if (logits[i] > logits[best]) best = i;
    return best;
}

static double nll(llama_context * ctx, const std::vector<llama_token> & ids, int n_vocab) {
    double total = 0.0;
    for (size_t i = 0; i + 1 < ids.size(); i++) {
        const float * row = llama_get_logits_ith(ctx, (int) i);
        float top = row[argmax(row, n_vocab)];
        double sum = 0.0;
        for (int v = 0; v < n_vocab; v++) sum += std::exp((double) row[v] - top);
        total += std::log(sum) + top - row[ids[i + 1]];
    }
    return total;
}

int main(int argc, char ** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf THREADS < requests\n", argv[0]);
        return 2;
    }
    llama_log_set([](ggml_log_level level, const char * text, void *) {  // errors, and where the weights went
        if (level == GGML_LOG_LEVEL_ERROR || strstr(text, "model buffer size")) fputs(text, stderr);
    }, nullptr);
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    llama_context_params params = llama_context_default_params();
    params.n_ctx = params.n_batch = params.n_ubatch = N_CTX;
    params.n_threads = params.n_threads_batch = atoi(argv[2]);
    params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;  // as llama-cpp-python opens a model by default
    llama_context * ctx = llama_init_from_model(model, params);
    if (!ctx) {
        fprintf(stderr, "cannot make a context of %d tokens\n", N_CTX);
        return 1;
    }
    for (std::string line; std::getline(std::cin, line);) {
        std::istringstream in(line);
        std::string kind;
        in >> kind;
        llama_memory_clear(llama_get_memory(ctx), true);
        if (kind == "tokenize") {
            std::string hex;
            in >> hex;
            std::string text = from_hex(hex);
            int n = -llama_tokenize(vocab, text.data(), (int) text.size(), nullptr, 0, true, false);
            std::vector<llama_token> ids(n);
            llama_tokenize(vocab, text.data(), (int) text.size(), ids.data(), n, true, false);
            print_ids(ids);
        } else if (kind == "score") {
            std::vector<llama_token> ids = read_ids(in);
            if ((int) ids.size() > N_CTX || !decode(ctx, ids, 0, true)) return 1;
            printf("%.9f\n", nll(ctx, ids, n_vocab));
        } else if (kind == "greedy") {
            int n_new;
            in >> n_new;
            std::vector<llama_token> ids = read_ids(in), out;
            if ((int) ids.size() + n_new > N_CTX || !decode(ctx, ids, 0, false)) return 1;
            for (int pos = (int) ids.size(); n_new > 0; pos++) {
                out.push_back(argmax(llama_get_logits_ith(ctx, -1), n_vocab));
                if ((int) out.size() == n_new) break;
                if (!decode(ctx, {out.back()}, pos, false)) return 1;
            }
            print_ids(out);
        } else {
            fprintf(stderr, "unknown request: %s\n", kind.c_str());
            return 2;
        }
        fflush(stdout);
    }
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
