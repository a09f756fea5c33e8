-- Argo CD health check for sagemaker.processing.dev/ProcessingJob.
-- Install it under resource.customizations.health.sagemaker.processing.dev_ProcessingJob in
-- argocd-cm (see docs/gitops.md). It reads the kstatus conditions the controller writes:
-- Healthy when the job Completed, Degraded when it failed, was stopped, its network or spec was
-- refused (Stalled=True), Progressing otherwise.
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller"
  return hs
end
local function condition(type)
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe the latest spec"
  return hs
end
local ready = condition("Ready")
local stalled = condition("Stalled")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "") .. ": " .. (stalled.message or "")
  return hs
end
hs.status = "Progressing"
if ready ~= nil then
  hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
end
return hs
