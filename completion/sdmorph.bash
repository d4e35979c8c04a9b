# bash completion for sdmorph: subcommands, their options, recipe files
# (.yaml, .yml, .json) and, after --model or for `info`, folders.
# Installed by `make install` into bash-completion's completions folder;
# or `source completion/sdmorph.bash`.

shopt -s extglob     # the recipe patterns below; bash-completion sets it too

_sdmorph()
{
    local cur prev cmd
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd=${COMP_WORDS[1]}

    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "render check bridge measure join slurm info tokenize import samplers
            --help --version" -- "$cur"))
        return
    fi
    case $prev in
        --model)
            COMPREPLY=($(compgen -d -- "$cur")); return ;;
        -o|--output)
            COMPREPLY=($(compgen -f -X '!*.@(mp4|gif|png|rgb)' -- "$cur") $(compgen -d -- "$cur")); return ;;
        --device)
            COMPREPLY=($(compgen -W "cpu cuda cuda:0 cuda:1" -- "$cur")); return ;;
        --devices)
            COMPREPLY=($(compgen -W "all 0,1 cpu,cpu" -- "$cur")); return ;;
        --shard)
            COMPREPLY=($(compgen -W "auto" -- "$cur")); return ;;
        --sampler)
            COMPREPLY=($(compgen -W "auto ddim euler euler_a dpmpp_2m dpmpp_2m_sde pndm lms heun unipc lcm" -- "$cur"))
            return ;;
        --set)
            COMPREPLY=($(compgen -S = -W "model width height steps guidance negative seed fps sampler eta karras
                guidance_rescale original_size crops_coords_top_left target_size timestep_spacing batch output contact_sheet gif_palette gif_dither weighting
                clip_skip embeddings loop frames interp ease hold bpm beats retime image strength fit" -- "$cur"))
            compopt -o nospace 2>/dev/null
            return ;;
        --image)
            COMPREPLY=($(compgen -f -X '!*.@(png|PNG|jpg|JPG|jpeg|JPEG|webp|WEBP)' -- "$cur") $(compgen -d -- "$cur"))
            return ;;
        --batch|--frames|--threads|--steps|--size|--seed|--strength|--progress-every|--beats|--shards|--raw|--partition|\
        --gpus-per-task|--cpus-per-task|--time|--sbatch)
            return ;;
    esac
    case $cmd in
        render)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "-o --output --model --device --devices --batch --frames --shard --steps
                    --size --seed --sampler --image --strength --set --threads --no-cuda-graphs --cudnn-benchmark --no-aoti --timings --json
                    --progress-every -q --quiet --help" -- "$cur"))
                return
            fi ;;
        check)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "-o --output --model --no-model --frames --shard --steps --size --seed
                    --sampler --image --strength --set -q --quiet --json --help" -- "$cur"))
                return
            fi ;;
        bridge)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "--frames --beats -o --output --model --device -q --quiet --help" -- "$cur"))
                return
            fi ;;
        join)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "-o --output -q --quiet --help" -- "$cur"))
                return
            fi
            # the recipe, then its segments' manifests
            if [ "$COMP_CWORD" -gt 2 ]; then
                COMPREPLY=($(compgen -f -X '!*.@(json|rgb)' -- "$cur") $(compgen -d -- "$cur"))
                return
            fi ;;
        slurm)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "--shards --partition --gpus-per-task --cpus-per-task --time --sbatch --model
                    --device --submit --help" -- "$cur"))
                return
            fi ;;
        measure)
            COMPREPLY=($(compgen -W "--raw --each --json --help" -- "$cur")
                $(compgen -f -X '!*.@(mp4|gif|rgb)' -- "$cur") $(compgen -d -- "$cur"))
            return ;;
        samplers)
            COMPREPLY=($(compgen -W "--model --help" -- "$cur"))
            return ;;
        info)
            COMPREPLY=($(compgen -W "--help" -- "$cur") $(compgen -d -- "$cur"))
            return ;;
        tokenize)
            COMPREPLY=($(compgen -W "--model --tokens --weighting --embeddings --help" -- "$cur"))
            return ;;
        import)
            COMPREPLY=($(compgen -W "--help" -- "$cur") $(compgen -f -X '!*.png' -- "$cur") $(compgen -d -- "$cur"))
            return ;;
        *)
            return ;;
    esac
    # recipes, and folders to find them in
    COMPREPLY=($(compgen -f -X '!*.@(yaml|yml|json)' -- "$cur") $(compgen -d -- "$cur"))
}
complete -F _sdmorph sdmorph
