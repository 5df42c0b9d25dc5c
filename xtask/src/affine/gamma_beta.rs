//! The learned γ and β of a trained `affine` run, read back from its saved weights.

use std::path::Path;

use norma_layers::checkpoint;
use norma_layers::Module;
use norma_tensor::Rng;
use serde::Serialize;

use crate::error::Error;
use crate::run::spec::RunSpec;

/// The trained γ (`weight`) and β (`bias`) of one batch norm, one value per channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerAffine {
    /// `bn1` … `bn4`.
    pub layer: String,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// What a trained model's batch norms hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    /// γ and β tensors in the state dict (`bn{i}.weight` and `bn{i}.bias`).
    pub norm_parameters: usize,
    /// Every batch norm's γ and β, in the model's order (empty without affine).
    pub layers: Vec<LayerAffine>,
}

/// Whether a parameter name is a batch norm's γ or β (`bn3.weight`, `bn1.bias`).
fn is_norm_parameter(name: &str) -> Option<(&str, &str)> {
    let (layer, what) = name.split_once('.')?;
    (layer.starts_with("bn") && (what == "weight" || what == "bias")).then_some((layer, what))
}

/// Loads `weights` into a fresh network of `spec` — the load refuses a file whose entries are
/// not exactly the network's, so a model built without γ and β cannot hold any — and reads its
/// batch norms' γ and β.
pub fn trained(spec: &RunSpec, weights: &Path) -> Result<Trained, Error> {
    let model = spec.build_model(&mut Rng::seed_from_u64(spec.seed))?;
    checkpoint::load(&model, weights)?;
    Ok(of_parameters(
        model
            .named_parameters()
            .into_iter()
            .map(|(name, p)| (name, p.value().to_vec())),
    ))
}

/// [`Trained`] from named parameter values: γ and β paired by layer, in order.
fn of_parameters(params: impl IntoIterator<Item = (String, Vec<f32>)>) -> Trained {
    let mut norm_parameters = 0;
    let mut layers: Vec<LayerAffine> = Vec::new();
    for (name, values) in params {
        let Some((layer, what)) = is_norm_parameter(&name) else {
            continue;
        };
        norm_parameters += 1;
        let at = match layers.iter().position(|l| l.layer == layer) {
            Some(i) => i,
            None => {
                layers.push(LayerAffine {
                    layer: layer.to_string(),
                    gamma: Vec::new(),
                    beta: Vec::new(),
                });
                layers.len() - 1
            }
        };
        match what {
            "weight" => layers[at].gamma = values,
            _ => layers[at].beta = values,
        }
    }
    Trained {
        norm_parameters,
        layers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::choices::ActivationChoice;
    use norma_layers::models::ModelKind;

    #[test]
    fn gamma_and_beta_are_paired_by_layer_and_absent_without_affine() {
        let spec = |affine| RunSpec {
            affine,
            ..RunSpec::recipe(ModelKind::LenetBn, ActivationChoice::Sigmoid, 4, 1)
        };
        let of = |affine| {
            let model = spec(affine)
                .build_model(&mut Rng::seed_from_u64(4))
                .unwrap();
            of_parameters(
                model
                    .named_parameters()
                    .into_iter()
                    .map(|(n, p)| (n, p.value().to_vec())),
            )
        };
        let with = of(true);
        assert_eq!(with.norm_parameters, 8);
        let names: Vec<&str> = with.layers.iter().map(|l| l.layer.as_str()).collect();
        assert_eq!(names, ["bn1", "bn2", "bn3", "bn4"]);
        let sizes: Vec<(usize, usize)> = with
            .layers
            .iter()
            .map(|l| (l.gamma.len(), l.beta.len()))
            .collect();
        assert_eq!(sizes, [(6, 6), (16, 16), (120, 120), (84, 84)]);
        assert!(with.layers[2].gamma.iter().all(|&g| g == 1.0));
        assert!(with.layers[2].beta.iter().all(|&b| b == 0.0));
        let without = of(false);
        assert_eq!(without.norm_parameters, 0);
        assert!(without.layers.is_empty());
        // A name that merely looks like one is not a batch norm's γ or β.
        assert_eq!(is_norm_parameter("fc1.weight"), None);
        assert_eq!(is_norm_parameter("bn2.running_mean"), None);
        assert_eq!(is_norm_parameter("bn2.bias"), Some(("bn2", "bias")));
    }

    #[test]
    fn saved_weights_load_back_only_into_their_own_kind() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lenet-bn.safetensors");
        let with = RunSpec::recipe(ModelKind::LenetBn, ActivationChoice::Relu, 1, 1);
        let without = RunSpec {
            affine: false,
            ..with.clone()
        };
        let model = without.build_model(&mut Rng::seed_from_u64(1)).unwrap();
        checkpoint::save(&model, &file).unwrap();
        assert_eq!(trained(&without, &file).unwrap().norm_parameters, 0);
        // The model with γ and β misses them in the file: an error, not a silent default.
        assert!(trained(&with, &file).is_err());
    }
}
