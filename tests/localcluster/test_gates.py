"""The feature-gate and runtime-config arguments a local control plane passes to its components."""

from gpuplace.localcluster.gates import NATIVE_GANG, Features


def test_no_features_add_no_arguments() -> None:
    assert Features().component_args() == []
    assert Features().apiserver_args() == []


def test_native_gang_gates_every_component_and_serves_v1alpha2_on_the_apiserver_only() -> None:
    gates = "--feature-gates=GangScheduling=true,GenericWorkload=true"
    assert NATIVE_GANG.component_args() == [gates]
    assert NATIVE_GANG.apiserver_args() == [gates, "--runtime-config=scheduling.k8s.io/v1alpha2=true"]
    assert "WorkloadWithJob" not in NATIVE_GANG.gates  # kube-controller-manager makes no PodGroups for Jobs


def test_a_gate_switched_off_is_written_false() -> None:
    assert Features(gates={"B": True, "A": False}).component_args() == ["--feature-gates=A=false,B=true"]
