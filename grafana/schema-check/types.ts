// The types grafana/dashboards/sipedge.json is checked against. generate.mjs writes dashboard.gen.ts,
// which assigns the dashboard's JSON, as an object literal (so excess properties are errors), twice:
//
// 1. to `PublishedDashboard`: Grafana's own published `Dashboard` type from @grafana/schema, as is
//    (its panels are `Panel | RowPanel`, its targets `Record<string, unknown>`) — the JSON is a
//    dashboard Grafana's schema accepts;
// 2. to `SipedgeDashboard`: the same published types made as strict as this dashboard allows — every
//    panel one of the built-in types it uses with that plugin's published options and field-config
//    types (stat, timeseries, table, bargauge; @grafana/schema's raw/composable/*/panelcfg), a
//    title, a description, the `${datasource}` variable as datasource, and at least one Prometheus
//    query with `refId` and an `expr` that filters `instance=~"$instance"`.
//
// Grafana writes enums into dashboard JSON by value ("absolute", not ThresholdsMode.Absolute), so both
// go through `Json<T>`, which turns each enum of a published type into the union of its values and
// changes nothing else.

import type {
  Dashboard,
  DataQuery,
  FieldConfig,
  FieldConfigSource,
  GridPos,
  Panel,
  RowPanel,
  VariableModel,
} from '@grafana/schema';
import type { Options as BarGaugeOptions } from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type { Options as StatOptions } from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type {
  FieldConfig as TableFieldConfig,
  Options as TableOptions,
} from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type {
  FieldConfig as TimeSeriesFieldConfig,
  Options as TimeSeriesOptions,
} from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/** `T` as it is written in dashboard JSON: each string enum becomes the union of its values. */
export type Json<T> = T extends string
  ? string extends T
    ? T
    : `${T}`
  : T extends ReadonlyArray<infer U>
    ? Array<Json<U>>
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T;

/** Grafana's published dashboard type, exactly. */
export type PublishedDashboard = Json<Dashboard>;

/**
 * A Prometheus query. @grafana/schema types targets only as `DataQuery` (refId, hide, ...); the
 * Prometheus fields are those of the Prometheus data source's query schema
 * (grafana/grafana packages/grafana-prometheus, `dataquery.gen.ts`), the ones this dashboard uses.
 */
export interface PrometheusQuery extends DataQuery {
  expr: string;
  legendFormat?: string;
  range?: boolean;
  instant?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  editorMode?: 'code' | 'builder';
  exemplar?: boolean;
}

/** The datasource of every panel and query: the dashboard's `datasource` variable. */
export interface DatasourceVariable {
  type: 'prometheus';
  uid: '${datasource}';
}

/** A query of this dashboard: Prometheus, on the datasource variable, reading the selected edges. */
export interface SipedgeQuery extends Omit<Json<PrometheusQuery>, 'expr' | 'datasource'> {
  expr: `${string}instance=~"$instance"${string}`;
  datasource?: DatasourceVariable;
}

/** Field config with the panel plugin's own `custom` type (`never`: the plugin has none). */
type FieldConfigSourceOf<Custom> = {
  defaults: Json<Omit<FieldConfig, 'custom'>> & { custom?: Json<Custom> };
  overrides: Json<FieldConfigSource['overrides']>;
};

/** A panel of plugin `Type`: the published `Panel` with that plugin's published option types. */
export interface PanelOf<Type extends string, Options, Custom>
  extends Omit<
    Json<Panel>,
    'type' | 'id' | 'title' | 'description' | 'gridPos' | 'datasource' | 'options' | 'fieldConfig' | 'targets'
  > {
  type: Type;
  id: number;
  title: string;
  /** What the panel shows and what to do when it looks wrong. */
  description: string;
  gridPos: Json<GridPos>;
  datasource: DatasourceVariable;
  options: Json<Options>;
  fieldConfig: FieldConfigSourceOf<Custom>;
  targets: [SipedgeQuery, ...SipedgeQuery[]];
}

export type SipedgePanel =
  | PanelOf<'stat', StatOptions, never>
  | PanelOf<'timeseries', TimeSeriesOptions, TimeSeriesFieldConfig>
  | PanelOf<'table', TableOptions, TableFieldConfig>
  | PanelOf<'bargauge', BarGaugeOptions, never>;

/** A row: the published `RowPanel`, titled; a collapsed row holds its panels. */
export interface SipedgeRow extends Omit<Json<RowPanel>, 'panels' | 'title' | 'gridPos'> {
  title: string;
  gridPos: Json<GridPos>;
  panels: SipedgePanel[];
}

export interface SipedgeDashboard
  extends Omit<PublishedDashboard, 'uid' | 'title' | 'description' | 'panels' | 'templating' | 'schemaVersion'> {
  uid: 'sipedge';
  title: string;
  description: string;
  schemaVersion: number;
  panels: Array<SipedgeRow | SipedgePanel>;
  templating: { list: Array<Json<VariableModel>> };
}
