# Deploy artifacts (Dockerfile, compose, Prometheus, Grafana, Kubernetes),
# validated without a Docker engine or a cluster. Label "deploy".
#
# The validators come from scripts/setup: hadolint, shellcheck (for the
# project's shell scripts, which the Dockerfile and CI run),
# kubernetes-validate and PyYAML in .venv/ (KVQ_VENV overrides), promtool
# from Debian's prometheus.
# They are looked up when a test runs, not here, so that configuring works
# before setup; a missing tool fails the test with a message saying so.

set(KVQ_DEPLOY_RUN ${CMAKE_CURRENT_SOURCE_DIR}/deploy_venv.sh)
set(KVQ_DEPLOY_PY ${KVQ_DEPLOY_RUN} python)

function(kvq_add_deploy_test name)
  add_test(NAME deploy.${name} COMMAND ${ARGN}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(deploy.${name} PROPERTIES LABELS deploy TIMEOUT 120
    ENVIRONMENT "KVQ_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()

kvq_add_deploy_test(dockerfile_passes_hadolint
  bash ${CMAKE_CURRENT_SOURCE_DIR}/deploy_hadolint_test.sh)
kvq_add_deploy_test(shell_scripts_pass_shellcheck
  bash ${CMAKE_CURRENT_SOURCE_DIR}/deploy_shellcheck_test.sh)
kvq_add_deploy_test(dockerfile_builds_with_the_scripts_ci_runs
  ${KVQ_DEPLOY_PY} ${CMAKE_CURRENT_SOURCE_DIR}/deploy_dockerfile_test.py)
kvq_add_deploy_test(prometheus_config_and_alerts_pass_promtool
  bash ${CMAKE_CURRENT_SOURCE_DIR}/deploy_prometheus_test.sh)
kvq_add_deploy_test(compose_runs_kvq_on_a_gpu_scraped_by_prometheus
  ${KVQ_DEPLOY_PY} ${CMAKE_CURRENT_SOURCE_DIR}/deploy_compose_test.py)

# Kubernetes: core manifests strictly against the oldest version kvq supports
# (1.27: native gRPC probes are GA) and the newest the pinned
# kubernetes-validate knows. The ServiceMonitor is a CRD that
# kubernetes-validate has no schema for: it is checked structurally.
foreach(version 1.27.0 1.37.0)
  kvq_add_deploy_test(k8s_core_manifests_pass_kubernetes_validate_strict_${version}
    ${KVQ_DEPLOY_PY} ${CMAKE_CURRENT_SOURCE_DIR}/deploy_k8s_test.py
    validate ${version})
endforeach()
kvq_add_deploy_test(k8s_daemonset_services_and_configmap_fit_together
  ${KVQ_DEPLOY_PY} ${CMAKE_CURRENT_SOURCE_DIR}/deploy_k8s_test.py wiring)
kvq_add_deploy_test(k8s_servicemonitor_scrapes_the_headless_service_metrics_port
  ${KVQ_DEPLOY_PY} ${CMAKE_CURRENT_SOURCE_DIR}/deploy_k8s_test.py
  servicemonitor)

# Against the real kvq-server: what the dashboards and alerts query must be
# exported, and the KVQ_* variables the deploy files set must be its flags.
if(TARGET kvq-server)
  kvq_add_deploy_test(dashboard_and_alerts_query_only_exported_metrics
    ${KVQ_DEPLOY_PY} ${CMAKE_CURRENT_SOURCE_DIR}/deploy_server_test.py
    metric-names $<TARGET_FILE:kvq-server>)
  kvq_add_deploy_test(env_variables_are_server_flags
    ${KVQ_DEPLOY_PY} ${CMAKE_CURRENT_SOURCE_DIR}/deploy_server_test.py
    env-flags $<TARGET_FILE:kvq-server>)
else()
  message(WARNING "kvq: no kvq-server target; deploy tests that need the "
                  "server are not registered")
endif()
