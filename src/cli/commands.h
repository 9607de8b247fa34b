/* The subcommand table: GQ_COMMAND(name, function, summary). Each function lives in
 * src/cli/cmd_<name>.c (or the file named in src/cli/meson.build) and has the signature
 * int fn(int argc, char **argv), where argv[0] is the subcommand name.
 * Included twice by main.c (declarations, then the table). */
GQ_COMMAND(version, cmd_version, "print the version, build options and BLAS in use")
GQ_COMMAND(list, cmd_list, "list the registered formats and methods with their parameters")
GQ_COMMAND(quantize-tensor, cmd_quantize_tensor, "quantize a raw float32 matrix with one format and report its error")
GQ_COMMAND(bench, cmd_bench, "performance tables (bench formats, ...)")
GQ_COMMAND(tokenize, cmd_tokenize, "tokenize a text file: token count, speed, first ids, int32 dump")
GQ_COMMAND(eval, cmd_eval, "perplexity (full / llamacpp protocol), KL and top-1 against a baseline")
GQ_COMMAND(quantize, cmd_quantize, "quantize a model with a method and a format (layer-wise pipeline), write it, report")
GQ_COMMAND(export, cmd_export, "quantize a model and write it for another runtime (--format gguf: llama.cpp)")
GQ_COMMAND(generate, cmd_generate, "generate text from a model (llama2.c run.c semantics, greedy by default)")
GQ_COMMAND(info, cmd_info, "a model's family, architecture fields, sizes and file hashes")
GQ_COMMAND(export, cmd_export, "write a model (llama2.c or HF, quantized or not) as a Hugging Face directory")
GQ_COMMAND(synth, cmd_synth, "write a synthetic checkpoint of a real model shape (tiny, stories15M, ...)")
GQ_COMMAND(run, cmd_run, "run an experiment file: sweep, results.csv/.h5, charts, resume")
GQ_COMMAND(plot, cmd_plot, "redraw the charts of results/<experiment> from its results.csv")
GQ_COMMAND(merge, cmd_merge, "merge the shard journals of `run --shard I/N` into results.csv/.h5 and charts")
